"""steering.inspection.labels: a hand-written contexts file read back exactly, the per-layer lookup for a
demo's SAE folders, and the shipped file, which must explain every live feature."""

import gzip
import json

import pytest

from steering.config import load_config, parse_config
from steering.inspection.feature_info import FolderFeatureInfo, load_feature_info
from steering.inspection.labels import (
    FILENAME,
    Context,
    has_feature_contexts,
    load_feature_contexts,
)
from tests.conftest import write_test_demo
from tests.helpers import ROOT

SHIPPED = ROOT / "saes" / "smollm2-135m-instruct" / "layer_15"


@pytest.mark.skipif(not (SHIPPED / "feature_contexts.json.gz").exists(), reason="no shipped contexts file")
def test_shipped_contexts_load_and_explain_every_feature():
    fc = load_feature_contexts(SHIPPED)
    import json

    d_sae = json.loads((SHIPPED / "cfg.json").read_text())["d_sae"]
    assert len(fc) == d_sae
    alive = [i for i in range(len(fc)) if fc.info(i)["fire_rate"] > 0]
    assert len(alive) > 0.9 * d_sae
    for i in alive[:: max(1, len(alive) // 50)]:
        assert fc.label(i) and fc.label(i) != "(dead)"
        ctx = fc.contexts(i)
        assert ctx and all(c.activation > 0 for c in ctx)
        assert [c.activation for c in ctx] == sorted((c.activation for c in ctx), reverse=True)
    with pytest.raises(IndexError):
        fc.label(d_sae)


DATA = {
    "vocab": {"5": " the", "6": " sea", "7": ".", "8": " dog"},
    "features": [
        {"label": "ocean / sea", "fire_rate": 0.1, "max_activation": 3.0, "top_tokens": [[" sea", 3.0], [" the", 0.5]],
         "promotes": [" waves"], "contexts": [[3.0, [5, 6, 7], 1], [1.0, [8, 6], 0]]},
        {"label": "(dead)", "fire_rate": 0.0, "max_activation": 0.0, "top_tokens": [], "promotes": [], "contexts": []},
        {"label": "→ dog", "fire_rate": 0.2, "max_activation": 1.0, "top_tokens": [[" Seal", 1.0]], "promotes": [" dog"],
         "contexts": [[1.0, [8], 0]]},
    ],
}


def _write(folder):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / FILENAME, "wt", encoding="utf-8") as f:
        json.dump(DATA, f)
    return folder


def test_a_written_file_reads_back_exactly(tmp_path):
    fc = load_feature_contexts(_write(tmp_path / "sae"))
    assert len(fc) == 3 and fc.label(0) == "ocean / sea" and fc.label(1) == "(dead)"
    assert fc.contexts(0) == [Context(" the", " sea", ".", 3.0), Context("", " dog", " sea", 1.0)]
    assert [str(c) for c in fc.contexts(0)] == [" the[[ sea]].", "[[ dog]] sea"]
    assert fc.contexts(1) == []
    assert fc.info(2) == {"label": "→ dog", "fire_rate": 0.2, "max_activation": 1.0, "top_tokens": [[" Seal", 1.0]],
                          "promotes": [" dog"]}
    assert load_feature_contexts(tmp_path / "sae" / FILENAME).label(2) == "→ dog"  # the file itself works too
    with pytest.raises(IndexError, match=r"feature 3 out of range: this SAE has features 0..2"):
        fc.contexts(3)
    with pytest.raises(IndexError):
        fc.label(-1)


def test_search_matches_labels_and_top_tokens_case_insensitively(tmp_path):
    fc = load_feature_contexts(_write(tmp_path / "sae"))
    assert fc.search("SEA") == [0, 2]  # label "ocean / sea"; top token " Seal"
    assert fc.search("dog") == [2] and fc.search("sea", n=1) == [0] and fc.search("zebra") == []


def test_a_missing_file_names_the_command_that_computes_it(tmp_path):
    assert not has_feature_contexts(tmp_path)
    assert has_feature_contexts(_write(tmp_path / "sae"))
    with pytest.raises(FileNotFoundError, match=r"python -m steering.offline.contexts"):
        load_feature_contexts(tmp_path / "elsewhere")


def test_per_layer_info_for_a_demos_sae_folders(tmp_path):
    config = load_config(write_test_demo(tmp_path))  # features and the inspector at layer 15, SAE under ./sae/layer_15
    assert load_feature_info(config) is None  # no contexts shipped yet
    _write(tmp_path / "sae" / "layer_15")
    info = load_feature_info(config)
    assert isinstance(info, FolderFeatureInfo) and set(info.folders) == {15}
    assert info.label(15, 0) == "ocean / sea" and info.contexts(15, 0) == [" the[[ sea]].", "[[ dog]] sea"]
    assert info.label(12, 0) is None and info.contexts(12, 0) == []  # a layer without a folder
    assert load_feature_info(config, layers=[12]) is None
    assert load_feature_info(parse_config({"model": "embedded:smollm2-135m-instruct"})) is None  # no SAE at all
