"""steering/offline/eval/scorer.py's `Scorer.score` on the tiny random Llama with a hand-set probe: the concept
grade adds the lexicon and the probe, the score is the harmonic mean with the zero rule."""

import math
from types import SimpleNamespace

import pytest
import torch

from steering.offline.eval.grades import DiffMeanProbe, Thresholds, harmonic
from steering.offline.eval.lexicons import concept
from steering.offline.eval.scorer import LightScorer, Scorer
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
    out = s.score(concept("ocean"), ["tell me about sea", "Hi"], answers)
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
    out = scorer(tiny_llama, -1e9).score(concept("ocean"), ["Hi"], [[]])
    assert out["rows"][0]["score"] == 0.0 and out["rows"][0]["concept"] == 0


class FixedAnswers:
    """Stands in for `answers.Answers`: the unsteered answers the light scorer takes its reference from."""

    def __init__(self, by_seed):
        self.by_seed, self.asked = by_seed, []

    def get(self, prompts, seed, max_new_tokens, **kw):
        self.asked.append((tuple(prompts), seed, max_new_tokens))
        return self.by_seed[seed]


def test_the_light_scorer_counts_the_lexicon_and_divides_by_the_unsteered_median(tiny_llama):
    from steering.offline.eval.readings import read_answers

    prompts = ["tell me about sea", "Hi", "a b c"]
    plain = {0: [TOK(t, add_special_tokens=False)["input_ids"] for t in ("hello !", "the cat", "a sea of b")]}
    engine = SimpleNamespace(model=tiny_llama, tokenizer=TOK)
    answers = FixedAnswers(plain)
    light = LightScorer(engine, answers, max_new_tokens=8)
    steered = [TOK(t, add_special_tokens=False)["input_ids"] for t in ("the ocean waves", "hello !", "")]
    out = light.score(concept("ocean"), prompts, steered, seed=0)
    ppl = [math.exp(-r.lp_free / r.n) for r in read_answers(tiny_llama, TOK, prompts, plain[0])]
    ref = sorted(ppl)[1]
    reads = read_answers(tiny_llama, TOK, prompts, steered)
    first, second, empty = out["rows"]
    assert (first["lexicon"], second["lexicon"], empty["lexicon"]) == (1, 0, 0)
    assert first["nll"] == pytest.approx(-reads[0].lp_prompt) and first["tokens"] == len(steered[0])
    assert first["ppl_ratio"] == pytest.approx(math.exp(-reads[0].lp_free / reads[0].n) / ref)
    assert empty["ppl_ratio"] is None and empty["tokens"] == 0
    assert out["summary"] == {"lexicon": pytest.approx(1 / 3), "n": 3}
    light.score(concept("ocean"), prompts, steered, seed=0)
    assert answers.asked == [(tuple(prompts), 0, 8)]  # the reference is read once per prompts and seed
