"""Score steered answers the AxBench way, offline: concept, instruction and fluency graded 0/1/2 each, the
sample score their harmonic mean (0 if any is 0), averaged over answers (formulas: `axbench_grades`).

    python -m steering.offline.axbench score [demo.yaml] [--features L15:8672,...] [--split report]
        [--seeds 0,1] [--strengths 20,30,40 --mode add] [--out benchmarks/axbench]
    python -m steering.offline.axbench probes [demo.yaml] [--layers 10,15,20,25]

Answers come through the serving path (`evaluate.generate_answers`: `Engine.run_now`, the config's sampling
settings, seed `seed * 1000 + i` for prompt i). The grades' thresholds are fitted on unsteered answers to
the pick split (`SPLITS["pick"]`, seeds 0 and 1); the probes on model answers to probe prompts
(`axbench_concepts`), with those unsteered pick answers as neutral texts too; nothing sees the report split.
The concept grade's detectors are a tight lexicon and a difference-of-means probe on the residual after
layer `PROBE_LAYER` of the unsteered model reading the answer (not the steered feature, nor its layer).
Function API (for strength sweeps): `scorer = Scorer.fit(engine)`, then `score_feature(engine, feature,
strength, mode, prompts, seed, scorer=scorer)`, `score_baseline(engine, concept, prompts, seed, scorer=scorer)`,
`score_unsteered(...)`; each returns `{"summary": {...means...}, "rows": [...per answer...]}`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from steering.offline.axbench_concepts import (
    NEUTRAL_SUBJECTS,
    PICK_PROMPTS,
    PROBE_HELDOUT_INSTRUCTIONS,
    PROBE_HELDOUT_TEMPLATES,
    PROBE_TEMPLATES,
    TIGHT,
    TightConcept,
    neutral_probe_prompts,
    tight_concept_for,
)
from steering.offline.axbench_grades import (
    DiffMeanProbe,
    Thresholds,
    harmonic,
    percentile,
    rep_ngram,
    summarise,
)
from steering.offline.axbench_measure import read_answers, unsteered_answers
from steering.offline.lexicon import matches

PROBE_LAYER = 25
PROBE_TOKENS = 48
FIT_SEEDS = (0, 1)


def _split(texts: list, n_subjects: int) -> tuple[list, list]:
    """Probe texts in template-major order: the last PROBE_HELDOUT_TEMPLATES templates are held out."""
    cut = (len(PROBE_TEMPLATES) - PROBE_HELDOUT_TEMPLATES) * n_subjects
    return texts[:cut], texts[cut : len(PROBE_TEMPLATES) * n_subjects]


def _neutral_split(texts: list) -> tuple[list, list]:
    """`neutral_probe_prompts()` texts: templates as `_split`, then the instructions, the last few held out."""
    train, held = _split(texts, len(NEUTRAL_SUBJECTS))
    rest = texts[len(PROBE_TEMPLATES) * len(NEUTRAL_SUBJECTS) :]
    cut = len(rest) - PROBE_HELDOUT_INSTRUCTIONS
    return train + rest[:cut], held + rest[cut:]


class Scorer:
    """Grades answers: thresholds fitted on the fit split, probes fitted per concept on first use."""

    def __init__(self, engine, thresholds: Thresholds | None, max_new_tokens: int, probe_layer: int = PROBE_LAYER,
                 cache: bool = True, fit_info: dict | None = None, probe_tokens: int = PROBE_TOKENS,
                 fit_answers: Sequence[tuple[str, list[int]]] = ()):
        self.engine, self.thresholds, self.max_new_tokens = engine, thresholds, max_new_tokens
        self.probe_layer, self.cache, self.probe_tokens = probe_layer, cache, probe_tokens
        self.probes: dict[str, DiffMeanProbe] = {}
        self.fit_info = fit_info or {}
        self.fit_answers = list(fit_answers)  # (prompt index, answer): unsteered answers of the fit split
        self._neutral: dict[int, tuple[list, list]] = {}

    @classmethod
    def fit(cls, engine, max_new_tokens: int = 64, prompts: Sequence[str] = PICK_PROMPTS,
            seeds: Sequence[int] = FIT_SEEDS, probe_layer: int = PROBE_LAYER, cache: bool = True,
            probe_tokens: int = PROBE_TOKENS) -> Scorer:
        """Thresholds from unsteered answers to `prompts` (the pick split) at `seeds`."""
        m, tok = engine.model, engine.tokenizer
        rel, mis, ppl, kept = [], [], [], []
        for seed in seeds:
            answers = unsteered_answers(engine, prompts, seed, max_new_tokens, cache=cache)
            kept += list(enumerate(answers))
            reads = read_answers(m, tok, prompts, answers)
            shifted = list(prompts[1:]) + list(prompts[:1])
            for r, s in zip(reads, read_answers(m, tok, shifted, answers)):
                if r.n:
                    rel.append((r.lp_prompt - r.lp_free) / r.n)
                    mis.append((s.lp_prompt - s.lp_free) / s.n)
                    ppl.append(float(torch.exp(torch.tensor(-r.lp_free / r.n))))
        th = Thresholds.fit(rel, mis, ppl)
        info = {"prompts": len(prompts), "seeds": list(seeds), "answers": len(rel),
                "relevance": _quartiles(rel), "mismatched_relevance": _quartiles(mis), "perplexity": _quartiles(ppl)}
        return cls(engine, th, max_new_tokens, probe_layer, cache, info, probe_tokens, kept)

    def _pool(self, answers: Sequence[Sequence[int]], layer: int) -> list[torch.Tensor]:
        reads = read_answers(self.engine.model, self.engine.tokenizer, [""] * len(answers), answers, layer=layer,
                             with_prompt=False)
        return [r.pooled for r in reads if r.pooled is not None]

    def probe_texts(self, prompts: Sequence[str], layer: int) -> list[torch.Tensor]:
        """Pooled residuals of the model's answers to probe prompts (seed 0, `probe_tokens` long)."""
        answers = unsteered_answers(self.engine, prompts, 0, self.probe_tokens, cache=self.cache)
        return self._pool([a or [self.engine.tokenizer.eos_token_id] for a in answers], layer)

    def neutral(self, layer: int) -> tuple[list, list]:
        """Neutral (train, held-out) texts: the neutral probe texts, and the fit split's unsteered answers
        (prompts i % 3 == 2 held out), so that the probe also learns what plain answers look like."""
        if layer not in self._neutral:
            train, held = _neutral_split(self.probe_texts(neutral_probe_prompts(), layer))
            fit = [(i, a) for i, a in self.fit_answers if a]
            pooled = self._pool([a for _, a in fit], layer)
            train += [h for (i, _), h in zip(fit, pooled) if i % 3 != 2]
            held += [h for (i, _), h in zip(fit, pooled) if i % 3 == 2]
            self._neutral[layer] = (train, held)
        return self._neutral[layer]

    def probe(self, concept: TightConcept, layer: int | None = None) -> DiffMeanProbe:
        """The concept's probe, fitted on first use."""
        layer = self.probe_layer if layer is None else layer
        key = f"{concept.name}@{layer}"
        if key not in self.probes:
            nt, nh = self.neutral(layer)
            pt, ph = _split(self.probe_texts(concept.probe_prompts(), layer), len(concept.subjects))
            self.probes[key] = DiffMeanProbe.fit(torch.stack(pt), torch.stack(nt), torch.stack(ph), torch.stack(nh))
        return self.probes[key]

    def score(self, concept: TightConcept, prompts: Sequence[str], answers: Sequence[Sequence[int]]) -> dict:
        """Per-answer grades and their means."""
        tok, th = self.engine.tokenizer, self.thresholds
        probe = self.probe(concept)
        reads = read_answers(self.engine.model, tok, prompts, answers, layer=self.probe_layer)
        rows = []
        for p, a, r in zip(prompts, answers, reads):
            text = tok.decode(a, skip_special_tokens=True)
            hits = matches(text, concept.words)
            if r.n == 0:
                rows.append({"prompt": p, "answer": text, "hits": hits, "lexicon": 0, "probe": 0, "probe_score": None,
                             "relevance": None, "ppl_ratio": None, "nll": 0.0, "tokens": 0, "rep3": 0.0, "concept": 0, "instruction": 0,
                             "fluency": 0, "score": 0.0})
                continue
            s = float(probe.scores(r.pooled[None])[0])
            lex, fires = int(bool(hits)), int(s > probe.threshold)
            rel = (r.lp_prompt - r.lp_free) / r.n
            ppl = float(torch.exp(torch.tensor(-r.lp_free / r.n)))
            rep = rep_ngram(text)
            grades = {"concept": lex + fires, "instruction": th.instruction(rel), "fluency": th.fluency(ppl, rep)}
            rows.append({"prompt": p, "answer": text, "hits": hits, "lexicon": lex, "probe": fires,
                         "probe_score": round(s, 3), "relevance": round(rel, 4), "ppl_ratio": round(ppl / th.ppl_ref, 3),
                         "nll": round(-r.lp_prompt, 4), "tokens": r.n, "rep3": round(rep, 3), **grades, "score": harmonic(list(grades.values()))})
        return {"summary": summarise(rows), "rows": rows}


def _quartiles(values: Sequence[float]) -> list[float]:
    return [round(percentile(values, q), 4) for q in (5, 25, 50, 75, 95)]


_SCORERS: dict[tuple[int, int], Scorer] = {}


def scorer_for(engine, max_new_tokens: int = 64) -> Scorer:
    """A `Scorer` fitted once per engine and answer length (kept for the process)."""
    key = (id(engine), max_new_tokens)
    if key not in _SCORERS or _SCORERS[key].engine is not engine:
        _SCORERS[key] = Scorer.fit(engine, max_new_tokens)
    return _SCORERS[key]


def concept_of(feature, concept: str | TightConcept | None = None) -> TightConcept:
    if isinstance(concept, TightConcept):
        return concept
    found = TIGHT.get(concept) if concept else tight_concept_for(getattr(feature, "label", None))
    if found is None:
        raise KeyError(f"no tight lexicon for {concept or getattr(feature, 'label', feature)!r}; known: {', '.join(TIGHT)}")
    return found


def _resolve(engine, feature):
    from steering.config import FeatureSpec

    if isinstance(feature, FeatureSpec):
        return feature
    return engine.feature(feature)


def score_feature(engine, feature, strength: float, mode: str, prompts: Sequence[str], seed: int, *,
                  concept: str | TightConcept | None = None, scorer: Scorer | None = None,
                  max_new_tokens: int = 64) -> dict:
    """Steer `feature` (a FeatureSpec or a key/label of the engine's) alone at `strength` in `mode` and grade
    the answers to `prompts`; the concept defaults to the one the feature's label names."""
    from steering.offline.evaluate import generate_answers

    scorer = scorer or scorer_for(engine, max_new_tokens)
    f = _resolve(engine, feature)
    c = concept_of(f, concept)
    plan = engine.plan({f.key: strength}, mode=mode, features=[f])
    answers = generate_answers(engine, prompts, plan=plan, max_new_tokens=scorer.max_new_tokens, seed=seed)
    out = scorer.score(c, prompts, answers)
    out.update(key=str(f.key), concept=c.name, strength=strength, mode=mode, seed=seed)
    return out


def score_baseline(engine, concept: str | TightConcept, prompts: Sequence[str], seed: int, *,
                   scorer: Scorer | None = None, max_new_tokens: int = 64) -> dict:
    """The system-prompt baseline ("Talk about X in every answer."), unsteered, graded the same way."""
    scorer = scorer or scorer_for(engine, max_new_tokens)
    c = concept_of(None, concept)
    answers = unsteered_answers(engine, prompts, seed, scorer.max_new_tokens, system_prompt=c.system, cache=scorer.cache)
    return {**scorer.score(c, prompts, answers), "concept": c.name, "system_prompt": c.system, "seed": seed}


def score_unsteered(engine, concept: str | TightConcept, prompts: Sequence[str], seed: int, *,
                    scorer: Scorer | None = None, max_new_tokens: int = 64) -> dict:
    """Plain answers graded for the concept: the floor (concept should be ~0, the rest ~2)."""
    scorer = scorer or scorer_for(engine, max_new_tokens)
    c = concept_of(None, concept)
    answers = unsteered_answers(engine, prompts, seed, scorer.max_new_tokens, cache=scorer.cache)
    return {**scorer.score(c, prompts, answers), "concept": c.name, "seed": seed}


if __name__ == "__main__":
    from steering.offline.axbench_cli import main

    main()
