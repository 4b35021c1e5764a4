"""A feature's calibration sweep and a phrase's concept vector on the real SmolLM2 with the shipped SAE:
the sweep's fluency ratio against the evaluation's own perplexity code, the recommendation is the sweep's best
margin, and a concept vector is the difference of means of the residuals it says it averaged."""

import math

import pytest
import torch

from steering import Engine
from steering.inspection.calibrate import calibrate, margin, says_any
from steering.inspection.concept_vector import build_concept_vector, check_phrase, describe


@pytest.fixture(scope="module")
def engine():
    with Engine.from_config("demo.yaml", device="cpu", dtype="float32") as e:
        yield e


def test_calibration_picks_the_sweeps_best_margin_and_its_fluency_matches_the_scorer(engine):
    from steering.offline.scoring import answer_nll

    prompts = ("Describe your ideal weekend.", "What should I cook for dinner tonight?")
    c = calibrate(engine, 15, 8241, ("music", "guitar", "song"), sweep=(("add", 0.1), ("add", 0.3)),
                  prompts=prompts, max_new_tokens=12)
    assert len(c.sweep) == 2 and c.prompts == 2 and c.max_new_tokens == 12
    best = max(c.sweep, key=lambda r: r["margin"])
    assert (c.mode, c.strength) == (best["mode"], best["strength"]) and c.met == (best["margin"] >= 0)
    norm = engine.typical_norm(15)
    assert [r["strength"] for r in c.sweep] == [round(0.1 * norm, 1), round(0.3 * norm, 1)]
    for r in c.sweep:
        assert r["inclusion"] == sum(says_any(t, c.words) for t in r["answers"]) / 2
        assert r["margin"] == pytest.approx(margin(r["inclusion"], r["fluency_ratio"]), abs=1e-3)
    # the fluency ratio, recomputed with the evaluation's scorer on the same token ids
    tok = engine.tokenizer
    from steering.config import FeatureSpec

    spec = FeatureSpec(layer=15, index=8241)
    eos = set(engine.eos_ids())

    def answers(plan):
        from dataclasses import replace

        reqs = [engine.request(p, plan, replace(engine.config.generation, max_new_tokens=12, seed=j))
                for j, p in enumerate(prompts)]
        engine.run_now(reqs)
        return [[int(t) for t in r.tokens if int(t) not in eos] for r in reqs]

    base = answers(None)
    strong = answers(engine.plan({spec.key: c.sweep[1]["strength"]}, mode="add", features=[spec]))
    assert [tok.decode(a, skip_special_tokens=True) for a in strong] == c.sweep[1]["answers"]
    (b_nll, b_n), (s_nll, s_n) = answer_nll(engine.model, tok, prompts, base), answer_nll(engine.model, tok, prompts, strong)
    expected = math.exp(s_nll / s_n) / math.exp(b_nll / b_n)
    assert c.sweep[1]["fluency_ratio"] == pytest.approx(expected, rel=1e-3)


def test_written_concept_vector_is_the_difference_of_means_it_reports(engine):
    from steering.inspection.concepts import concept_prompt_sets

    cv = build_concept_vector(engine, "  the   ocean ", 15, source="written", decoder=engine.sae(15).W_dec)
    assert cv.phrase == "the ocean" and cv.layer == 15 and cv.source == "written"
    pos, neg = concept_prompt_sets("the ocean")
    tok = engine.tokenizer
    rows = engine.read_ids([tok(t, add_special_tokens=False)["input_ids"] for t in pos + neg], 15)
    p = torch.cat([h[1:] for h in rows[: len(pos)]])
    n = torch.cat([h[1:] for h in rows[len(pos):]])
    v = p.mean(0) - n.mean(0)
    assert cv.positions == (len(p), len(n))
    torch.testing.assert_close(cv.direction, v / v.norm(), rtol=1e-4, atol=1e-5)
    assert cv.norm == pytest.approx(float(v.norm()), rel=1e-4)
    assert len(cv.top) == 10 and cv.decomposition is not None and 0 < cv.decomposition.explained <= 1
    assert "concept vector for 'the ocean' at layer 15" in describe(cv, lambda i: None)


def test_generated_concept_vector_is_repeatable_and_steers_toward_the_phrase(engine):
    a = build_concept_vector(engine, "dogs", 15, n=2, max_new_tokens=12)
    b = build_concept_vector(engine, "dogs", 15, n=2, max_new_tokens=12)
    torch.testing.assert_close(a.direction, b.direction)  # the recipe is enough: a share link rebuilds it
    from dataclasses import replace

    from steering.steer.plan import Edit, SteeringPlan

    plan = SteeringPlan({15: [Edit("add", a.direction, 0.35 * engine.typical_norm(15))]})
    short = replace(engine.config.generation, max_new_tokens=24)
    answer = engine.chat("Tell me about your weekend.", plan=plan, settings=short)
    plain = engine.chat("Tell me about your weekend.", settings=short)
    assert answer != plain


@pytest.mark.parametrize("bad", ["", "   ", "x" * 61, "dogs; rm -rf", None, 3])
def test_bad_phrases_are_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="write 1-60 letters, digits, spaces"):
        check_phrase(bad)


def test_a_concept_in_the_service_steers_the_chat_as_its_edit_does_on_the_engine(engine):
    from dataclasses import replace

    from steering.service.concepts import ConceptChoice, with_concepts
    from steering.service.demo import DemoService
    from steering.steer.plan import SteeringPlan

    service = DemoService(engine)
    view = service.concept_vector("dogs")
    cv = service.concept_vectors.get(15, "dogs", "written")
    assert view["phrase"] == "dogs" and view["layer"] == 15 and view["norm"] == pytest.approx(cv.norm, abs=1e-4)
    assert [f["index"] for f in view["top_features"]] == [i for i, _ in cv.top]
    assert view["top_features"][0]["label"] == service.label(15, cv.top[0][0])

    off = {str(f.key): None for f in engine.features}
    ask, settings = "Tell me about your weekend.", replace(engine.config.generation, max_new_tokens=16, temperature=0.0)

    def served(concepts):
        setup = service.setup_from_api(off, "own", None, 16, 0.0, None, None, None, None, concepts)
        return [u.steered for u in service.chat(ask, None, setup)][-1]

    steered = served([{"phrase": "dogs", "strength": 60}])
    assert steered != served(None)
    plan = with_concepts(SteeringPlan(), [(ConceptChoice(15, "dogs", strength=60.0), cv)])
    assert steered == engine.chat(ask, settings=settings, plan=plan)
