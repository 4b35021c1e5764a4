"""steering.inspection.cards: one card per feature from a hand-written contexts file and stats file, either file
alone, and the per-layer lookup of a demo's SAE folders."""

import gzip
import json

import pytest
import torch
from safetensors.torch import save_file

from steering.config import load_config
from steering.inspection.cards import STATS_FILENAME, FeatureCards, load_feature_cards, load_stats
from steering.inspection.feature_info import load_feature_info
from steering.inspection.labels import FILENAME
from tests.conftest import write_test_demo

DATA = {
    "vocab": {"5": " the", "6": " sea", "7": ".", "8": " dog"},
    "features": [
        {"label": "ocean / sea", "fire_rate": 0.1, "max_activation": 3.0, "top_tokens": [[" sea", 3.0]],
         "top_words": [["sea", 3.0]], "promotes": [" waves"], "says": [" ocean", " tide"],
         "contexts": [[3.0, [5, 6, 7], 1]]},
        {"label": "(dead)", "fire_rate": 0.0, "max_activation": 0.0, "top_tokens": [], "promotes": [], "contexts": []},
    ],
}
STATS = {"density": torch.tensor([0.25, 0.0]), "output_score": torch.tensor([0.5, 0.0]),
         "output_base": torch.tensor([0.125, 0.0]), "histogram": torch.tensor([[1, 2, 3], [0, 0, 0]], dtype=torch.int32),
         "hist_edges": torch.tensor([0.1, 1.0, 10.0, 100.0])}


def _write(folder, contexts=True, stats=True):
    folder.mkdir(parents=True, exist_ok=True)
    if contexts:
        with gzip.open(folder / FILENAME, "wt", encoding="utf-8") as f:
            json.dump(DATA, f)
    if stats:
        save_file(STATS, str(folder / STATS_FILENAME), metadata={"heldout_tokens": "12"})
    return folder


def test_a_card_holds_everything_shipped_about_a_feature(tmp_path):
    cards = load_feature_cards(_write(tmp_path / "sae"))
    assert len(cards) == 2 and cards.meta == {"heldout_tokens": "12"}
    assert cards.card(0) == {
        "index": 0, "label": "ocean / sea", "fire_rate": 0.1, "max_activation": 3.0, "top_tokens": [[" sea", 3.0]],
        "top_words": [["sea", 3.0]], "promotes": [" waves"], "says": [" ocean", " tide"],
        "contexts": [" the[[ sea]]."], "density": 0.25, "output_score": 0.5, "output_base": 0.125,
        "histogram": {"edges": pytest.approx([0.1, 1.0, 10.0, 100.0]), "counts": [1, 2, 3]}}
    assert cards.card(1)["says"] == [] and cards.card(1)["top_words"] == [] and cards.card(1)["density"] == 0.0
    assert cards.densities.tolist() == [0.25, 0.0] and cards.output_scores.tolist() == [0.5, 0.0]
    assert cards.words_of(0) >= {"ocean", "sea", "tide"}
    with pytest.raises(IndexError, match=r"feature 2 out of range"):
        cards.card(2)


def test_either_file_alone_gives_cards_and_neither_names_the_commands(tmp_path):
    only_stats = load_feature_cards(_write(tmp_path / "a", contexts=False))
    assert only_stats.card(0)["label"] is None and only_stats.card(0)["density"] == 0.25
    only_contexts = load_feature_cards(_write(tmp_path / "b", stats=False))
    card = only_contexts.card(0)
    assert card["label"] == "ocean / sea" and card["density"] is None and card["histogram"] is None
    assert load_stats(tmp_path / "b") == ({}, {})
    with pytest.raises(FileNotFoundError, match="steering.offline.feature_stats"):
        load_feature_cards(tmp_path / "nothing")
    with pytest.raises(ValueError):
        FeatureCards(None, {})


def test_per_layer_cards_for_a_demos_sae_folders(tmp_path):
    config = load_config(write_test_demo(tmp_path))
    _write(tmp_path / "sae" / "layer_15")
    info = load_feature_info(config)
    card = info.card(15, 0)
    assert card["label"] == "ocean / sea" and card["density"] == 0.25 and card["contexts"] == [" the[[ sea]]."]
    assert info.cards(15) is info.cards(15)  # loaded once
    assert info.card(12, 0) is None
