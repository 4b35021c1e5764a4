"""The AxBench-style grades, model-free: thresholds, the difference-of-means probe, the sample score.

- concept c = [lexicon hit] + [probe fires] in {0, 1, 2};
- instruction i: relevance r = (lp_prompt - lp_free) / n (nats per token); i = 2 if r >= t2, 1 if r >= t1, else 0;
  t2 = 25th percentile of unsteered answers' r on the fit split, t1 = 90th percentile of mismatched pairs'
  r there (answer j read after prompt j+1), capped at t2;
- fluency f = min(f_ppl, f_rep): f_ppl = 2 if ppl / ppl_ref <= q2, 1 if <= q1, else 0, with ppl = exp(-lp_free / n),
  ppl_ref the median unsteered ppl and q2 the 95th percentile of unsteered ratios on the fit split, q1 = 2 * q2;
  f_rep = 2 if rep3 <= 0.1, 1 if rep3 <= 0.3, else 0 (rep3: share of an answer's word 3-grams that repeat an earlier one);
- score = 3 / (1/c + 1/i + 1/f), 0 if any grade is 0 (AxBench's harmonic mean with its zero rule; max 2).

Also reported (not a grade): the fluency ratio of `evaluate` / `scoring.score`, the pooled perplexity of a set of
answers under the unsteered model after their own chat prompt, over that of the unsteered answers to the same
prompts (`fluency_ratio`, from the rows' `nll` = -lp_prompt and `tokens`), and the median per-answer prompt-free
`ppl_ratio` (`median_ppl_ratio`).

Probe: w = mean(concept) - mean(neutral) on the training texts' pooled residuals, s(x) = x . w / |w|;
the threshold maximises balanced accuracy on held-out texts (the middle of the best interval)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

REP_FOR_2, REP_FOR_1 = 0.1, 0.3


def rep_ngram(text: str, n: int = 3) -> float:
    """Share of the word n-grams of `text` (lower-case \\w+ words) equal to an earlier n-gram: 1 - unique / total."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def grade_high(value: float, t1: float, t2: float) -> int:
    """2 if value >= t2, 1 if value >= t1, else 0 (higher is better)."""
    return 2 if value >= t2 else 1 if value >= t1 else 0


def grade_low(value: float, t2: float, t1: float) -> int:
    """2 if value <= t2, 1 if value <= t1, else 0 (lower is better)."""
    return 2 if value <= t2 else 1 if value <= t1 else 0


def harmonic(grades: Sequence[float]) -> float:
    """len / sum(1 / g), 0 if any grade is 0."""
    if not grades or any(g <= 0 for g in grades):
        return 0.0
    return len(grades) / sum(1.0 / g for g in grades)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation."""
    return float(torch.quantile(torch.tensor(list(values), dtype=torch.float64), q / 100.0))


@dataclass
class Thresholds:
    t1: float  # instruction relevance for 1
    t2: float  # instruction relevance for 2
    ppl_ref: float  # median unsteered perplexity
    q2: float  # perplexity ratio for fluency 2
    q1: float  # perplexity ratio for fluency 1
    rep2: float = REP_FOR_2
    rep1: float = REP_FOR_1

    @classmethod
    def fit(cls, relevance: Sequence[float], mismatched: Sequence[float], ppl: Sequence[float]) -> Thresholds:
        """From unsteered answers on the fit split: their relevance, mismatched pairs' relevance, their perplexity."""
        t2 = percentile(relevance, 25)
        ref = percentile(ppl, 50)
        q2 = percentile([p / ref for p in ppl], 95)
        return cls(t1=min(percentile(mismatched, 90), t2), t2=t2, ppl_ref=ref, q2=q2, q1=2 * q2)

    def instruction(self, relevance: float) -> int:
        return grade_high(relevance, self.t1, self.t2)

    def fluency(self, ppl: float, rep3: float) -> int:
        return min(grade_low(ppl / self.ppl_ref, self.q2, self.q1), grade_low(rep3, self.rep2, self.rep1))

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def best_threshold(pos: Sequence[float], neg: Sequence[float]) -> tuple[float, float]:
    """The threshold t maximising balanced accuracy of "score > t" (positives above), and that accuracy.

    Candidates lie between consecutive sorted scores (and below / above all); among equally good ones,
    the middle of their range."""
    values = sorted(set(list(pos) + list(neg)))
    cands = [values[0] - 1.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1.0]

    def bal(t):
        return 0.5 * (sum(p > t for p in pos) / len(pos) + sum(n <= t for n in neg) / len(neg))

    accs = [bal(t) for t in cands]
    best = max(accs)
    tied = [t for t, a in zip(cands, accs) if a == best]
    lo, hi = min(tied), max(tied)
    if lo == cands[0] or hi == cands[-1]:
        return (lo if hi == cands[-1] else hi), best
    return (lo + hi) / 2, best


@dataclass
class DiffMeanProbe:
    direction: Tensor  # (d,), unit
    threshold: float
    heldout: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, pos_train: Tensor, neg_train: Tensor, pos_held: Tensor, neg_held: Tensor) -> DiffMeanProbe:
        """pos_* / neg_*: (N, d) pooled residuals of concept / neutral texts."""
        w = pos_train.float().mean(0) - neg_train.float().mean(0)
        probe = cls(w / w.norm().clamp_min(1e-12), 0.0)
        ps, ns = probe.scores(pos_held).tolist(), probe.scores(neg_held).tolist()
        probe.threshold, acc = best_threshold(ps, ns)
        probe.heldout = {"balanced_accuracy": acc, "n_pos": len(ps), "n_neg": len(ns),
                         "tpr": sum(s > probe.threshold for s in ps) / len(ps),
                         "fpr": sum(s > probe.threshold for s in ns) / len(ns)}
        return probe

    def scores(self, x: Tensor) -> Tensor:
        return x.float() @ self.direction

    def fires(self, x: Tensor) -> Tensor:
        return self.scores(x) > self.threshold


def fluency_ratio(rows: Sequence[dict], base_rows: Sequence[dict]) -> float:
    """exp(sum nll / sum tokens) of `rows` over the same of `base_rows` (pooled over answers, as
    `scoring.score`'s `fluency_ratio`): rows carry `nll` (nats, after the chat prompt) and `tokens`."""
    def ppl(rs):
        n = sum(int(r.get("tokens") or 0) for r in rs)
        return math.exp(sum(float(r.get("nll") or 0.0) for r in rs) / n) if n else float("nan")

    return ppl(rows) / ppl(base_rows)


def median_ppl_ratio(rows: Sequence[dict]) -> float | None:
    """Median of the rows' prompt-free `ppl_ratio` (empty answers left out), None if there is none."""
    vals = [float(r["ppl_ratio"]) for r in rows if r.get("ppl_ratio") is not None]
    return percentile(vals, 50) if vals else None


SUMMARISED = ("concept", "instruction", "fluency", "score", "lexicon", "probe")


def summarise(rows: Sequence[dict]) -> dict:
    """Means over answers of each grade, the score, and the concept's two signals: those of `SUMMARISED` that
    every row has (a light scorer's rows carry the lexicon hit only)."""
    if not rows:
        return {"n": 0}
    keys = [k for k in SUMMARISED if all(r.get(k) is not None for r in rows)]
    out = {k: sum(float(r[k]) for r in rows) / len(rows) for k in keys}
    out["n"] = len(rows)
    return out
