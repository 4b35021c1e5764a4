"""A recommended strength and mode for one feature, from a small sweep the app can afford.

A strength means little across features: one steers at 0.15 of the layer's typical norm, another needs 0.3
and breaks the sentence at 0.35. So a feature's card offers the setting a short sweep found best:
- every (mode, fraction) of the sweep, strength `fraction x N_L` (N_L the layer's typical residual norm), steers
  `PROMPTS` (everyday requests, kept apart from every evaluation split) for `max_new_tokens`, all rows in one
  batch, seeds `1000 * seed + j` as the evaluation samples them;
- inclusion: the share of answers that say one of the feature's words (its label's words and the tokens
  steering with it raises, `says`; whole words, with -s/-es/-ed/-ing endings);
- fluency ratio: the answers' perplexity under the unsteered model after the prompt, over the unsteered answers'
  (the evaluation's fluency ratio, `inspection.fluency`);
- the recommendation is the setting with the largest `margin = min((inclusion - 0.7) / 0.1, (2 - ratio) / 0.25)`:
  inside the target (>= 70% at ratio <= 2) when positive, else the closest to it.
Results are cached per feature (`CalibrationCache`), so a visitor who adds a feature starts there."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

PROMPTS = (
    "What should I cook for dinner tonight?", "How do I stay focused while studying?",
    "Write a short note to thank a neighbour.", "What is a good way to spend a rainy afternoon?",
    "Give me advice for my first day at a new job.", "Describe your ideal weekend.",
)
SWEEP = (("add", 0.12), ("add", 0.18), ("add", 0.24), ("add", 0.3),
         ("clamp", 0.12), ("clamp", 0.18), ("clamp", 0.24), ("clamp", 0.3))
"""(mode, strength as a fraction of the layer's typical norm): the shipped defaults sit at 0.14-0.28."""
TARGET_INCLUSION, TARGET_RATIO = 0.7, 2.0
STOPWORDS = frozenset("the and for with that this from into are was were not you your our their its his her has "
                      "have had but all any can will one two out who what when how why".split())


@dataclass(frozen=True)
class Calibration:
    """A feature's recommended setting and the sweep it came from."""

    layer: int
    index: int
    mode: str
    strength: float
    inclusion: float
    fluency_ratio: float
    met: bool
    words: tuple[str, ...]
    sweep: tuple[dict, ...] = field(default=())
    prompts: int = len(PROMPTS)
    max_new_tokens: int = 32
    seed: int = 0

    def summary(self) -> str:
        where = "meets the target" if self.met else "closest to the target"
        return (f"{self.mode} {self.strength:g}: {self.inclusion:.0%} of {self.prompts} answers say it at fluency ratio "
                f"{self.fluency_ratio:.2f} ({where}: >= 70% at <= 2)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(**{**d, "words": tuple(d["words"]), "sweep": tuple(d.get("sweep", ()))})


def margin(inclusion: float, ratio: float) -> float:
    return min((inclusion - TARGET_INCLUSION) / 0.1, (TARGET_RATIO - ratio) / 0.25)


def feature_words(label: str | None, says: Sequence[str]) -> tuple[str, ...]:
    """Words that show the feature in an answer: its label's words and the tokens steering raises, lower case,
    three letters or more, no stopwords."""
    text = " ".join([label or ""] + [str(s) for s in says])
    return tuple(sorted({w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in STOPWORDS}))


def says_any(text: str, words: Sequence[str]) -> bool:
    """Whether `text` has one of `words` as a whole word, also as its stem (a final s or e dropped) with
    -s/-es/-e/-ed/-d/-ing: "dogs" finds "dog", "dance" finds "dancing"."""
    if not words:
        return False
    stems = {w[:-1] if w.endswith(("s", "e")) and len(w) > 3 else w for w in words}
    forms = "|".join(re.escape(s) + "(?:s|es|e|ed|d|ing)?" for s in sorted(stems))
    return re.search(rf"\b(?:{forms})\b", text.lower()) is not None


def calibrate(engine, layer: int, index: int, words: Sequence[str], sweep: Sequence[tuple[str, float]] = SWEEP,
              prompts: Sequence[str] = PROMPTS, max_new_tokens: int = 32, seed: int = 0) -> Calibration:
    """Run the sweep for feature `index` at `layer` on `engine` (see the module docstring)."""
    from steering.config import FeatureSpec
    from steering.inspection.fluency import answer_logprobs, perplexity

    if not words:
        raise ValueError(f"feature L{layer}:{index} has no words to look for in answers (no label, nothing it says)")
    norm = engine.typical_norm(layer)
    settings = replace(engine.config.generation, max_new_tokens=max_new_tokens)
    spec = FeatureSpec(layer=layer, index=index)
    plans = [None] + [engine.plan({spec.key: round(f * norm, 1)}, mode=m, features=[spec]) for m, f in sweep]
    requests = [engine.request(p, plan, replace(settings, seed=1000 * seed + j))
                for plan in plans for j, p in enumerate(prompts)]
    engine.run_now(requests)
    for r in requests:
        if r.error is not None:
            raise r.error
    eos = set(engine.eos_ids())
    answers = [[int(t) for t in r.tokens if int(t) not in eos] for r in requests]
    frames = [[int(t) for t in r.spec.input_ids[0].tolist()] for r in requests]
    pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else 0
    logps = answer_logprobs(engine.model, frames, answers, pad)
    n = len(prompts)
    base = perplexity(logps[:n])
    rows = []
    for k, (mode, fraction) in enumerate(sweep):
        part = slice(n * (k + 1), n * (k + 2))
        texts = [engine.tokenizer.decode(a, skip_special_tokens=True) for a in answers[part]]
        inclusion = sum(says_any(t, words) for t in texts) / n
        ratio = perplexity(logps[part]) / base
        rows.append({"mode": mode, "strength": round(fraction * norm, 1), "fraction": fraction,
                     "inclusion": inclusion, "fluency_ratio": round(ratio, 4), "margin": round(margin(inclusion, ratio), 4),
                     "answers": texts})
    best = max(rows, key=lambda r: r["margin"])
    return Calibration(layer, index, best["mode"], best["strength"], best["inclusion"], best["fluency_ratio"],
                       best["margin"] >= 0, tuple(words), tuple(rows), n, max_new_tokens, seed)


class CalibrationCache:
    """Calibrations on disk, one JSON file per feature under `folder`, plus read-only shipped ones (a
    `calibration.json` in the SAE folder: {"L22:123": {...}}); a computed one is never recomputed."""

    def __init__(self, folder: Path, shipped: dict[str, dict] | None = None):
        self.folder, self.shipped = Path(folder), dict(shipped or {})

    @classmethod
    def for_sae(cls, root: Path, sae_identity: dict, sae_folders: Sequence[Path] = ()) -> "CalibrationCache":
        """The cache of one model + SAE (`root`/calibration/<hash of the SAE's identity>), with what its folders ship."""
        key = hashlib.sha256(json.dumps(sae_identity, sort_keys=True).encode()).hexdigest()[:16]
        shipped: dict[str, dict] = {}
        for folder in sae_folders:
            path = Path(folder) / "calibration.json"
            if path.is_file():
                shipped.update(json.loads(path.read_text()))
        return cls(Path(root) / "calibration" / key, shipped)

    def _path(self, layer: int, index: int) -> Path:
        return self.folder / f"L{layer}_{index}.json"

    def get(self, layer: int, index: int) -> Calibration | None:
        path = self._path(layer, index)
        if path.is_file():
            return Calibration.from_dict(json.loads(path.read_text()))
        found = self.shipped.get(f"L{layer}:{index}")
        return Calibration.from_dict(found) if found is not None else None

    def put(self, c: Calibration) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(c.layer, c.index)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(c.to_dict()))
        tmp.replace(path)
