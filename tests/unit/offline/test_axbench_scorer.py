"""steering/offline/axbench.py's `Scorer.score` on the tiny random Llama with a hand-set probe: the concept
grade adds the lexicon and the probe, the score is the harmonic mean with the zero rule."""

import math
from types import SimpleNamespace

import pytest
import torch

from steering.offline.axbench import Scorer, concept_of
from steering.offline.axbench_concepts import TIGHT
from steering.offline.axbench_grades import DiffMeanProbe, Thresholds, harmonic
from tests.helpers import tiny_tokenizer

TOK = tiny_tokenizer()


def scorer(model, probe_threshold):
    engine = SimpleNamespace(model=model, tokenizer=TOK)
    th = Thresholds(t1=-math.inf, t2=math.inf, ppl_ref=1.0, q2=math.inf, q1=math.inf)  # instruction 1, fluency 2
    s = Scorer(engine, th, max_new_tokens=8, probe_layer=1)
    direction = torch.zeros(model.config.hidden_size)
    direction[0] = 1.0
    s.probes["ocean@1"] = DiffMeanProbe(direction, probe_threshold)
    return s


@pytest.mark.parametrize("threshold,probe", [(-1e9, 1), (1e9, 0)])
def test_concept_grade_is_lexicon_plus_probe(tiny_llama, threshold, probe):
    s = scorer(tiny_llama, threshold)
    answers = [TOK(t, add_special_tokens=False)["input_ids"] for t in ("the ocean waves", "hello !")]
    out = s.score(TIGHT["ocean"], ["tell me about sea", "Hi"], answers)
    hit, miss = out["rows"]
    assert hit["hits"] == ["ocean"] and hit["lexicon"] == 1 and miss["lexicon"] == 0
    assert hit["probe"] == miss["probe"] == probe
    assert (hit["concept"], miss["concept"]) == (1 + probe, probe)
    for r in out["rows"]:
        assert (r["instruction"], r["fluency"]) == (1, 2)
        assert r["score"] == harmonic([r["concept"], 1, 2])
    assert out["summary"]["score"] == pytest.approx((hit["score"] + miss["score"]) / 2)
    assert out["summary"]["lexicon"] == 0.5 and out["summary"]["n"] == 2


def test_an_empty_answer_scores_zero(tiny_llama):
    out = scorer(tiny_llama, -1e9).score(TIGHT["ocean"], ["Hi"], [[]])
    assert out["rows"][0]["score"] == 0.0 and out["rows"][0]["concept"] == 0


def test_concept_of_a_feature_label_or_a_name():
    assert concept_of(SimpleNamespace(label="music (instruments)")).name == "music"
    assert concept_of(None, "pirate").name == "pirate"
    with pytest.raises(KeyError, match="no tight lexicon"):
        concept_of(SimpleNamespace(label="Eiffel Tower"))
