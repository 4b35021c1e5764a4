"""A run of the steering evaluation: one object owns the engine and the scorer, steers each feature of a run
config alone at each of its settings and seeds, grades the answers, and writes the run directory.

    with Evaluation(config, out=Path("benchmarks/runs/round4")) as ev:   # loads the engine
        result = ev.run()          # config.yaml, answers/, results.json, table.md, plot.png

`Evaluation(config, engine=e)` uses an engine already loaded and leaves it open (its owner closes it); otherwise
the evaluation loads one from the run config and closes it on exit. The scorer is fitted on first use. Every
answer set is kept under `<out>/answers/` (`answers.Answers`), so a run that stops, or one extended with more
features or settings, regenerates nothing it already has; `results.json` and the table are rewritten after
each feature. Answers come through the serving path with the app config's sampling settings, prompt i of seed
s sampled with seed `s * 1000 + i`; each steered answer steers one feature alone (`Engine.plan`).

Per feature the result holds its runs (one per setting: grades per answer, means pooled and per seed), the
system-prompt baseline and the unsteered answers, graded the same way; each summary also has the fluency ratio
against the unsteered answers of the same seeds (pooled) and the median prompt-free ppl ratio."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from steering.engine import Engine
from steering.inspection.concept_vector import ConceptVector, build_concept_vector
from steering.offline.eval.answers import Answers, AnswerStore, shared_dir
from steering.offline.eval.config import FeatureRun, RunConfig
from steering.offline.eval.grades import fluency_ratio, median_ppl_ratio, summarise
from steering.offline.eval.lexicons import Concept, concept
from steering.offline.eval.pick import flat_runs, picks
from steering.offline.eval.report import result_markdown, write_run
from steering.offline.eval.scorer import LightScorer, Scorer
from steering.offline.eval.splits import split
from steering.service.concepts import ConceptChoice, with_concepts


def merge(per_seed: Sequence[dict], unsteered: Sequence[dict] | None = None) -> dict:
    """Rows of all seeds together; with the unsteered results of the same seeds, each summary (merged and per
    seed) also gets the fluency ratio against them (pooled) and the median prompt-free ppl ratio."""
    rows = [r for s in per_seed for r in s["rows"]]
    out = {"summary": summarise(rows), "per_seed": [dict(s["summary"]) for s in per_seed], "rows": rows}
    if unsteered is not None:
        base = [r for u in unsteered for r in u["rows"]]
        for summ, s, u in [(out["summary"], rows, base)] + [(p, s["rows"], u["rows"])
                                                             for p, s, u in zip(out["per_seed"], per_seed, unsteered)]:
            summ["fluency_ratio"] = round(fluency_ratio(s, u), 4)
            summ["median_ppl_ratio"] = median_ppl_ratio(s)
    return out


class Evaluation:
    """Owns the engine (unless given one), the answer stores and the scorer of one run."""

    def __init__(self, config: RunConfig, out: Path | None = None, engine=None, log: Callable[[str], None] = print,
                 command: str = "run"):
        self.config, self.out, self.log, self.command = config, None if out is None else Path(out), log, command
        self._owns = engine is None
        if engine is None:
            e = config.engine
            engine = Engine.from_config(e.config, device=e.device, dtype=e.dtype, **e.overrides)
        self.engine = engine
        self.answers = Answers(engine, AnswerStore(self.out / "answers") if self.out else None,
                               AnswerStore(shared_dir()) if config.scorer.shared_cache else None)
        self._scorer: Scorer | LightScorer | None = None
        self._vectors: dict[tuple, ConceptVector] = {}

    def __enter__(self) -> Evaluation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._vectors.clear()
        if self._scorer is not None:
            self._scorer.close()
        if self._owns:
            self.engine.close()

    @property
    def scorer(self) -> Scorer | LightScorer:
        """Fitted on first use (the full scorer: thresholds on the fit split's unsteered answers)."""
        if self._scorer is None:
            s, n = self.config.scorer, self.config.max_new_tokens
            if s.kind == "light":
                self._scorer = LightScorer(self.engine, self.answers, n)
            else:
                fit = list(split(s.fit_split).prompts[: s.fit_prompts])
                self._scorer = Scorer.fit(self.engine, self.answers, n, fit, s.fit_seeds, s.probe_layer, s.probe_tokens)
        return self._scorer

    def concept(self, feature: FeatureRun) -> Concept:
        return concept(feature.concept, self.config.scorer.lexicon)

    def steered(self, feature: FeatureRun, mode: str, strength: float, prompts: Sequence[str], seed: int) -> dict:
        """`feature` alone at (`mode`, `strength`), graded for its concept."""
        if feature.vector is not None:
            return self._steered_vector(feature, mode, strength, prompts, seed)
        spec = feature.spec(mode, strength)
        plan = self.engine.plan({spec.key: strength}, mode=mode, features=[spec])
        c = self.engine.config
        steering = {"feature": {k: v for k, v in spec.to_dict().items() if k != "label"}, "params": dict(feature.params),
                    "generated_only": c.steer_generated_only, "special_tokens": c.steer_special_tokens,
                    "sae": c.sae.to_dict() if c.sae else None, "vectors": str(c.vectors)}
        name = f"L{feature.layer}_{feature.index}-{mode}-{strength:g}"
        got = self.answers.get(prompts, seed, self.config.max_new_tokens, plan=plan, steering=steering, name=name)
        return {**self.scorer.score(self.concept(feature), prompts, got, seed), "seed": seed}

    def concept_vector(self, feature: FeatureRun) -> ConceptVector:
        """The feature's concept vector, built once per evaluation (`self._vectors`, closed with it)."""
        r = feature.vector
        key = (feature.layer, r.phrase, r.source, r.seed)
        if key not in self._vectors:
            self._vectors[key] = build_concept_vector(self.engine, r.phrase, feature.layer, source=r.source, seed=r.seed)
        return self._vectors[key]

    def _steered_vector(self, feature: FeatureRun, mode: str, strength: float, prompts: Sequence[str], seed: int) -> dict:
        """A concept vector alone at (`mode`, `strength`), as the app steers one (`service.concepts.with_concepts`);
        its answers are keyed by the direction's own bytes, so a changed recipe never reuses old answers."""
        cv, r = self.concept_vector(feature), feature.vector
        choice = ConceptChoice(feature.layer, r.phrase, r.source, strength, mode)
        plan = with_concepts(self.engine.plan({}, features=[]), [(choice, cv)])
        c = self.engine.config
        digest = hashlib.sha256(cv.direction.float().contiguous().numpy().tobytes()).hexdigest()[:16]
        steering = {"concept_vector": {"layer": feature.layer, "phrase": r.phrase, "source": r.source, "seed": r.seed,
                                       "direction": digest}, "mode": mode, "strength": strength,
                    "generated_only": c.steer_generated_only, "special_tokens": c.steer_special_tokens}
        name = f"L{feature.layer}_cv_{r.phrase.replace(' ', '_')}_{r.source}-{mode}-{strength:g}"
        got = self.answers.get(prompts, seed, self.config.max_new_tokens, plan=plan, steering=steering, name=name)
        return {**self.scorer.score(self.concept(feature), prompts, got, seed), "seed": seed}

    def baseline(self, c: Concept, prompts: Sequence[str], seed: int) -> dict:
        """The system-prompt baseline ("Talk about X in every answer."), unsteered, graded the same way."""
        got = self.answers.get(prompts, seed, self.config.max_new_tokens, system_prompt=c.system, name=f"system-{c.name}")
        return {**self.scorer.score(c, prompts, got, seed), "system_prompt": c.system, "seed": seed}

    def unsteered(self, c: Concept, prompts: Sequence[str], seed: int) -> dict:
        """Plain answers graded for the concept: the floor (concept should be ~0, the rest ~2)."""
        got = self.answers.get(prompts, seed, self.config.max_new_tokens)
        return {**self.scorer.score(c, prompts, got, seed), "seed": seed}

    def run(self) -> dict:
        """Every feature at every setting and seed, its baseline and the unsteered answers; written as it goes."""
        cfg, t0 = self.config, time.time()
        prompts, seeds, scorer = cfg.prompts(), cfg.seeds, self.scorer
        self.log(f"{cfg.name}: {len(cfg.features)} features on {cfg.split} ({len(prompts)} prompts x seeds "
                 f"{list(seeds)}), scorer {scorer.kind} ({time.time() - t0:.0f}s)")
        result = {"name": cfg.name, "command": self.command, "config": str(cfg.engine.config.name), "split": cfg.split,
                  "prompts": prompts, "seeds": list(seeds), "max_new_tokens": cfg.max_new_tokens, "scorer": scorer.kind,
                  "lexicon": cfg.scorer.lexicon, "probe_layer": cfg.scorer.probe_layer, **scorer.describe(),
                  "features": []}
        for f in cfg.features:
            c = self.concept(f)
            unsteered = [self.unsteered(c, prompts, s) for s in seeds]
            entry = {"key": f.key, "label": f.label or c.name, "concept": c.name, "kind": c.kind, "runs": []}
            if f.vector is not None:
                cv = self.concept_vector(f)
                entry["vector"] = {"phrase": cv.phrase, "source": cv.source, "seed": cv.seed, "norm": round(cv.norm, 4),
                                   "positions": list(cv.positions)}
            for mode, strength in f.settings:
                r = merge([self.steered(f, mode, strength, prompts, s) for s in seeds], unsteered)
                entry["runs"].append({"mode": mode, "strength": strength, **({"params": dict(f.params)} if f.params else {}),
                                      **r})
                self.log(f"{f.key} {c.name} {mode} {strength:g}: {_fmt(r['summary'])} ({time.time() - t0:.0f}s)")
            if cfg.baseline:
                entry["baseline"] = merge([self.baseline(c, prompts, s) for s in seeds], unsteered)
                self.log(f"{f.key} {c.name} system prompt: {_fmt(entry['baseline']['summary'])}")
            entry["unsteered"] = merge(unsteered, unsteered)
            result["features"].append(entry)
            result.update(scorer.describe())
            result["answers_generated"], result["seconds"] = self.answers.generated, time.time() - t0
            if self.command == "pick":
                result["rule"], result["picked"] = cfg.pick_rule, picks(flat_runs(result), cfg.pick_rule)
            if self.out is not None:
                write_run(self.out, cfg, result, result_markdown(result))
        return result


def _fmt(s: dict) -> str:
    grades = (f"concept {s['concept']:.2f} instruction {s['instruction']:.2f} fluency {s['fluency']:.2f} score "
              f"{s['score']:.2f}, probe {s['probe']:.0%}, " if "score" in s else "")
    return f"{grades}lexicon {s['lexicon']:.0%}, fluency ratio {s.get('fluency_ratio', float('nan')):.2f}"
