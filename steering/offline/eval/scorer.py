"""The two scorers: the AxBench-style grades (`Scorer`) and the light screen (`LightScorer`).

`Scorer` grades concept, instruction and fluency 0/1/2 each; the sample score is their harmonic mean, 0 if any
is 0 (formulas: `grades`). Its thresholds are fitted on unsteered answers to the fit split (the pick split,
seeds 0 and 1); its probes on the model's answers to the probe set's prompts, with those unsteered fit answers
as neutral texts too; nothing sees a report split. The concept grade's detectors are a tight lexicon and a
difference-of-means probe on the residual after layer `probe_layer` of the unsteered model reading the answer
(not the steered feature, nor its layer).

`LightScorer` measures only what a screen needs: the lexicon hit, and each answer's nll after its chat prompt
(for the pooled fluency ratio) and prompt-free perplexity over the median of the unsteered answers to the same
prompts at the same seed. Both read answers through the unsteered model (`readings`) and get answers from an
`answers.Answers`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from steering.offline.eval.grades import DiffMeanProbe, Thresholds, harmonic, percentile, rep_ngram, summarise
from steering.offline.eval.lexicons import Concept, matches
from steering.offline.eval.readings import pool_answers, read_answers
from steering.offline.eval.splits import ProbeSet, probe_set

PROBE_LAYER = 25
PROBE_TOKENS = 48
FIT_SEEDS = (0, 1)


class Scorer:
    """Grades answers: thresholds fitted on the fit split, probes fitted per concept on first use."""

    kind = "full"

    def __init__(self, engine, thresholds: Thresholds | None, max_new_tokens: int, probe_layer: int = PROBE_LAYER,
                 answers=None, fit_info: dict | None = None, probe_tokens: int = PROBE_TOKENS,
                 fit_answers: Sequence[tuple[int, list[int]]] = (), probes: ProbeSet | None = None):
        self.engine, self.thresholds, self.max_new_tokens = engine, thresholds, max_new_tokens
        self.probe_layer, self.answers, self.probe_tokens = probe_layer, answers, probe_tokens
        self.probe_set = probes or probe_set()
        self.probes: dict[str, DiffMeanProbe] = {}
        self.fit_info = fit_info or {}
        self.fit_answers = list(fit_answers)  # (prompt index, answer): unsteered answers of the fit split
        self._neutral: dict[int, tuple[list, list]] = {}

    @classmethod
    def fit(cls, engine, answers, max_new_tokens: int, prompts: Sequence[str], seeds: Sequence[int] = FIT_SEEDS,
            probe_layer: int = PROBE_LAYER, probe_tokens: int = PROBE_TOKENS, probes: ProbeSet | None = None) -> Scorer:
        """Thresholds from unsteered answers to `prompts` (the pick split) at `seeds`."""
        m, tok = engine.model, engine.tokenizer
        rel, mis, ppl, kept = [], [], [], []
        for seed in seeds:
            got = answers.get(prompts, seed, max_new_tokens)
            kept += list(enumerate(got))
            reads = read_answers(m, tok, prompts, got)
            shifted = list(prompts[1:]) + list(prompts[:1])
            for r, s in zip(reads, read_answers(m, tok, shifted, got)):
                if r.n:
                    rel.append((r.lp_prompt - r.lp_free) / r.n)
                    mis.append((s.lp_prompt - s.lp_free) / s.n)
                    ppl.append(_ppl(r))
        th = Thresholds.fit(rel, mis, ppl)
        info = {"prompts": len(prompts), "seeds": list(seeds), "answers": len(rel),
                "relevance": _quartiles(rel), "mismatched_relevance": _quartiles(mis), "perplexity": _quartiles(ppl)}
        return cls(engine, th, max_new_tokens, probe_layer, answers, info, probe_tokens, kept, probes)

    def _pool(self, answers: Sequence[Sequence[int]], layer: int) -> list[torch.Tensor]:
        pooled = pool_answers(self.engine.model, self.engine.tokenizer, answers, layer)
        return [h for h in pooled if h is not None]

    def probe_texts(self, prompts: Sequence[str], layer: int) -> list[torch.Tensor]:
        """Pooled residuals of the model's answers to probe prompts (seed 0, `probe_tokens` long)."""
        got = self.answers.get(prompts, 0, self.probe_tokens, name="probe-texts")
        return self._pool([a or [self.engine.tokenizer.eos_token_id] for a in got], layer)

    def neutral(self, layer: int) -> tuple[list, list]:
        """Neutral (train, held-out) texts: the neutral probe texts, and the fit split's unsteered answers
        (prompts i % 3 == 2 held out), so that the probe also learns what plain answers look like."""
        if layer not in self._neutral:
            train, held = self.probe_set.split_neutral(self.probe_texts(self.probe_set.neutral_prompts(), layer))
            fit = [(i, a) for i, a in self.fit_answers if a]
            pooled = self._pool([a for _, a in fit], layer)
            train += [h for (i, _), h in zip(fit, pooled) if i % 3 != 2]
            held += [h for (i, _), h in zip(fit, pooled) if i % 3 == 2]
            self._neutral[layer] = (train, held)
        return self._neutral[layer]

    def probe(self, concept: Concept, layer: int | None = None) -> DiffMeanProbe:
        """The concept's probe, fitted on first use."""
        layer = self.probe_layer if layer is None else layer
        key = f"{concept.name}@{layer}"
        if key not in self.probes:
            nt, nh = self.neutral(layer)
            texts = self.probe_texts(self.probe_set.prompts(concept.probe_subjects), layer)
            pt, ph = self.probe_set.split_texts(texts, len(concept.probe_subjects))
            self.probes[key] = DiffMeanProbe.fit(torch.stack(pt), torch.stack(nt), torch.stack(ph), torch.stack(nh))
        return self.probes[key]

    def score(self, concept: Concept, prompts: Sequence[str], answers: Sequence[Sequence[int]], seed: int = 0) -> dict:
        """Per-answer grades and their means (`seed` is the light scorer's; the grades do not depend on it)."""
        tok, th = self.engine.tokenizer, self.thresholds
        probe = self.probe(concept)
        reads = read_answers(self.engine.model, tok, prompts, answers, layer=self.probe_layer)
        rows = []
        for p, a, r in zip(prompts, answers, reads):
            text = tok.decode(a, skip_special_tokens=True)
            hits = matches(text, concept.words)
            if r.n == 0:
                rows.append({"prompt": p, "answer": text, "hits": hits, "lexicon": 0, "probe": 0, "probe_score": None,
                             "relevance": None, "ppl_ratio": None, "nll": 0.0, "tokens": 0, "rep3": 0.0, "concept": 0,
                             "instruction": 0, "fluency": 0, "score": 0.0})
                continue
            s = float(probe.scores(r.pooled[None])[0])
            lex, fires = int(bool(hits)), int(s > probe.threshold)
            rel = (r.lp_prompt - r.lp_free) / r.n
            ppl = _ppl(r)
            rep = rep_ngram(text)
            grades = {"concept": lex + fires, "instruction": th.instruction(rel), "fluency": th.fluency(ppl, rep)}
            rows.append({"prompt": p, "answer": text, "hits": hits, "lexicon": lex, "probe": fires,
                         "probe_score": round(s, 3), "relevance": round(rel, 4), "ppl_ratio": round(ppl / th.ppl_ref, 3),
                         "nll": round(-r.lp_prompt, 4), "tokens": r.n, "rep3": round(rep, 3), **grades,
                         "score": harmonic(list(grades.values()))})
        return {"summary": summarise(rows), "rows": rows}

    def describe(self) -> dict:
        """What a run records of this scorer: thresholds, how they were fitted, each probe's held-out quality."""
        return {"thresholds": self.thresholds.to_dict(), "fit": self.fit_info,
                "probes": {k.split("@")[0]: {"threshold": p.threshold, "heldout": p.heldout} for k, p in self.probes.items()
                           if k.endswith(f"@{self.probe_layer}")}}

    def close(self) -> None:
        """Forget the fitted probes and pooled texts (the engine belongs to whoever made it)."""
        self.probes.clear()
        self._neutral.clear()


class LightScorer:
    """The lexicon hit, nll and prompt-free ppl ratio only (no probe, no thresholds; rows carry no grades)."""

    kind = "light"

    def __init__(self, engine, answers, max_new_tokens: int):
        self.engine, self.answers, self.max_new_tokens = engine, answers, max_new_tokens
        self._ppl_ref: dict[tuple, float] = {}

    def ppl_ref(self, prompts: Sequence[str], seed: int) -> float:
        """The median prompt-free perplexity of the unsteered answers to `prompts` at `seed`."""
        key = (tuple(prompts), seed)
        if key not in self._ppl_ref:
            plain = read_answers(self.engine.model, self.engine.tokenizer, prompts,
                                 self.answers.get(prompts, seed, self.max_new_tokens), with_prompt=False)
            self._ppl_ref[key] = percentile([math.exp(-r.lp_free / r.n) for r in plain if r.n], 50)
        return self._ppl_ref[key]

    def score(self, concept: Concept, prompts: Sequence[str], answers: Sequence[Sequence[int]], seed: int = 0) -> dict:
        tok, ref = self.engine.tokenizer, self.ppl_ref(prompts, seed)
        rows = []
        for p, a, r in zip(prompts, answers, read_answers(self.engine.model, tok, prompts, answers)):
            text = tok.decode(a, skip_special_tokens=True)
            hits = matches(text, concept.words)
            rows.append({"prompt": p, "answer": text, "hits": hits, "lexicon": int(bool(hits)), "nll": -r.lp_prompt,
                         "tokens": r.n, "ppl_ratio": math.exp(-r.lp_free / r.n) / ref if r.n else None})
        return {"summary": summarise(rows), "rows": rows}

    def describe(self) -> dict:
        return {"thresholds": None, "fit": None, "probes": {}}

    def close(self) -> None:
        self._ppl_ref.clear()


def _ppl(r) -> float:
    """exp(-lp_free / n), in float32 as the thresholds of the recorded runs were fitted."""
    return float(torch.exp(torch.tensor(-r.lp_free / r.n)))


def _quartiles(values: Sequence[float]) -> list[float]:
    return [round(percentile(values, q), 4) for q in (5, 25, 50, 75, 95)]
