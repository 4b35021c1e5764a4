"""steering.offline.model_card: the shipped SAE's card is what its JSON files generate, and a corpus
manifest adds its data section."""

import json
import shutil

from steering.offline.model_card import model_card, sink_threshold_of
from tests.helpers import ROOT

SHIPPED = ROOT / "saes" / "smollm2-135m-instruct" / "layer_15"


def _without_data_section(card: str) -> str:
    head, _, rest = card.partition("## Data\n")
    return head + rest[rest.index("## Files"):] if rest else card


def test_the_shipped_card_is_generated_from_the_shipped_files():
    # the data section needs the corpus manifest, which is not shipped
    assert model_card(SHIPPED) == _without_data_section((SHIPPED / "README.md").read_text()).rstrip("\n") + "\n"


def test_the_layer_26_card_is_generated_from_its_files_and_names_the_wide_corpus_in_its_commands():
    """Its corpus profile (from the manifest) puts `--corpus` and the bfloat16 cache in the commands."""
    folder = SHIPPED.parent / "layer_26"
    manifest = {"profile": "wide", "tokens": {"train": 0, "heldout": 0}, "sources": []}
    card = model_card(folder, manifest)
    assert _without_data_section(card) == _without_data_section((folder / "README.md").read_text())
    assert "--corpus ~/.cache/steering/corpus-wide --cache-only --shuffle --compute-dtype bfloat16" in card
    assert "python -m steering.offline.feature_stats saes/smollm2-135m-instruct/layer_26 --corpus" in card


def test_sink_threshold_comes_from_the_cfg_metadata(tmp_path):
    cfg = json.loads((SHIPPED / "cfg.json").read_text())
    assert sink_threshold_of(SHIPPED) == float(cfg["metadata"]["sink_norm_threshold"])
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "metadata": {}}))
    assert sink_threshold_of(tmp_path) is None


def test_a_manifest_adds_one_row_per_source_and_their_attributions(tmp_path):
    for name in ("cfg.json", "training.json", "quality.json"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    manifest = {"tokens": {"train": 1234, "heldout": 56}, "sources": [
        {"what": "poems", "registry": "pypi", "package": "verse", "version": "1.0", "licence": "MIT",
         "documents": 12, "tokens_train": 1000, "attribution": "Verse by A. Poet (MIT)."},
        {"what": "notes", "registry": "debian", "package": "notes", "licence": "public domain", "documents": 3,
         "attribution": "Notes (public domain)."},
    ]}
    card = model_card(tmp_path, manifest)
    assert "1,234 training tokens were built" in card and "and 56 held out" in card
    assert "| poems | pypi: verse 1.0 | MIT | 12 | 1,000 |" in card
    assert "| notes | debian: notes | public domain | 3 | 0 |" in card
    assert "Attribution: Verse by A. Poet (MIT). Notes (public domain)." in card
    assert _without_data_section(card) == model_card(tmp_path)
