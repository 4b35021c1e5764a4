"""Reading a run config (the format: `config`) into its dataclasses, checking everything before a model loads.

Each check appends a problem worded as the app config's are (`key.path: what is wrong, got VALUE. Fix: ...`)
and goes on with what it could read, so one `ConfigError` lists every problem of the file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml

from steering.config import MODES, FeatureSpec, load_config
from steering.config.modes import MODE_INFO, strength_problem
from steering.config.problems import ConfigError, check_bool, check_finite, check_int, problem, unknown_key
from steering.inspection.concept_vector import SOURCES, check_phrase
from steering.offline.eval.config import ConceptRecipe, EngineSpec, FeatureRun, RunConfig, ScorerSpec
from steering.offline.eval.lexicons import concept, concept_for, concept_names, concepts
from steering.offline.eval.splits import DataError, probe_set, split

TOP = ("name", "engine", "split", "n_prompts", "seeds", "max_new_tokens", "baseline", "scorer", "pick", "probes",
       "features", "reconstructed")
ENGINE = ("config", "device", "dtype", "threads", "overrides")
FEATURE = ("layer", "index", "vector", "mode", "strength", "concept", "label", "params")
VECTOR = ("phrase", "source", "seed")
SCORER = ("kind", "lexicon", "probe_layer", "probe_tokens", "probe_set", "fit_split", "fit_prompts", "fit_seeds",
          "shared_cache")
SCORER_KINDS = ("full", "light")
PICK_RULES = ("margin", "first-round")
"""`pick.margin` (the later rounds' rule) and `pick.choose` with `pick.fallback` (the first round's)."""


def load_run_config(path: str | Path, role: str | None = None) -> RunConfig:
    """Read and check a run config; `role` "pick" refuses a report split (before anything is loaded). The run's
    name defaults to the file's (to its folder's, for a run directory's config.yaml)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no run config at {p}. Fix: check the path", source=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML{where}: {getattr(e, 'problem', None) or e}. Fix: correct the YAML syntax "
                          "there", source=str(path)) from None
    name = p.resolve().parent.name if p.stem == "config" else p.stem
    return parse_run_config(data, p.resolve().parent, default_name=name, role=role, source=str(path))


def parse_run_config(data: Any, base: Path, default_name: str = "run", role: str | None = None,
                     source: str | None = None) -> RunConfig:
    """`data` as `yaml.safe_load` gives it; relative paths resolve against `base`."""
    if not isinstance(data, Mapping):
        raise ConfigError(problem("run config", "expected a mapping of fields", data, "start from the example in "
                                  "steering/offline/eval/config.py"), source)
    problems = [unknown_key("", k, TOP) for k in data if k not in TOP]
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        problems.append(problem("name", "must be a folder name (letters, digits, . _ -)", name, "write name: round4"))
    engine, app = _engine(data.get("engine"), base, problems)
    the_split = split_ref(data.get("split", "report"), "split", problems, role)
    n = _count(data.get("n_prompts"), "n_prompts", the_split, problems)
    seeds = seed_list(data.get("seeds", [0, 1]), "seeds", problems)
    mnt = data.get("max_new_tokens", 64)
    check_int(problems, "max_new_tokens", mnt, 64, minimum=1)
    baseline = data.get("baseline", True)
    check_bool(problems, "baseline", baseline)
    scorer = scorer_from(data.get("scorer") or {}, problems)
    rule = pick_rule(data.get("pick") or {}, problems)
    probes = _probes(data.get("probes"), scorer.lexicon, problems)
    feats = features_from(data.get("features", []), app, scorer.lexicon, problems, needed=probes is None)
    reconstructed = data.get("reconstructed")
    if reconstructed is not None and not isinstance(reconstructed, str):
        problems.append(problem("reconstructed", "expected a note (a string)", reconstructed,
                                "say in words where the config was recovered from"))
    if problems:
        raise ConfigError(problems, source)
    return RunConfig(name, engine, the_split, tuple(feats), n, tuple(seeds), mnt, baseline, scorer, rule, probes,
                     reconstructed)


def _engine(d: Any, base: Path, problems: list[str]) -> tuple[EngineSpec, Any]:
    """The engine section, and the app config it names with this run's changes (loaded: cheap, no model; None
    when it cannot be read)."""
    d = {} if d is None else d
    if not isinstance(d, Mapping):
        problems.append(problem("engine", "expected a mapping", d, "write engine: {config: demo.yaml}"))
        d = {}
    problems += [unknown_key("engine.", k, ENGINE) for k in d if k not in ENGINE]
    path = (base / str(d.get("config", "demo.yaml"))).resolve()
    device, dtype, threads = d.get("device", "cpu"), d.get("dtype", "float32"), d.get("threads", 1)
    check_int(problems, "engine.threads", threads, 1, minimum=1)
    overrides = d.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        problems.append(problem("engine.overrides", "expected a mapping", overrides,
                                "write overrides: {steer_generated_only: true}"))
        overrides = {}
    spec = EngineSpec(path, device, dtype, threads, dict(overrides))
    try:
        app = load_config(path)
    except ConfigError as e:
        problems += [f"engine.config ({path.name}): {p}" for p in e.problems]
        return spec, None
    bad = sorted(set(overrides) - {f.name for f in fields(app)} | {"device", "dtype", "base_dir"} & set(overrides))
    if bad:
        problems.append(problem("engine.overrides", f"{', '.join(bad)}: not top-level fields of the app config that a run "
                                "may change", dict(overrides), "name fields such as steer_generated_only, mode, generation"
                                "; device and dtype have their own keys"))
    try:
        app = replace(app, device=device, dtype=dtype, **{k: v for k, v in overrides.items() if k not in bad})
    except ConfigError as e:
        problems += [("engine." if p.startswith(("device", "dtype")) else "engine.overrides.") + p for p in e.problems]
    return spec, app


def _count(n: Any, path: str, ref: str, problems: list[str]) -> int | None:
    """A prompt count (null: all of the split's), no more than the split has."""
    if n is None:
        return None
    check_int(problems, path, n, 16, minimum=1)
    try:
        have = len(split(ref).prompts)
    except DataError:
        return n
    if isinstance(n, int) and n > have:
        problems.append(problem(path, f"is more than the {have} prompts of {ref}", n, f"write {path}: {have}, or null"))
    return n


def _probes(d: Any, lexicon: Any, problems: list[str]) -> dict | None:
    """The `probes` section (`probes` command only): layers to read, concepts to probe."""
    if d is None:
        return None
    if not isinstance(d, Mapping) or set(d) - {"layers", "concepts"}:
        problems.append(problem("probes", "expected a mapping with layers and concepts", d,
                                "write probes: {layers: [10, 15, 20, 25], concepts: [music, food]}"))
        return None
    layers = seed_list(d.get("layers"), "probes.layers", problems)
    names = d.get("concepts") or (list(concepts(lexicon)) if isinstance(lexicon, int) else [])
    for i, name in enumerate(names if isinstance(names, list) else [names]):
        try:
            concept(str(name), lexicon)
        except DataError as e:
            problems.append(problem(f"probes.concepts[{i}]", str(e), name, "name a concept of the scorer's lexicon"))
    return {"layers": layers, "concepts": list(names) if isinstance(names, list) else [names]}


def split_ref(ref: Any, path: str, problems: list[str], role: str | None = None) -> str:
    """`name@version` of the split `ref` names; `role` "pick" refuses a report split."""
    try:
        s = split(str(ref))
    except DataError as e:
        problems.append(problem(path, str(e), ref, "name a file of steering/offline/eval/data/splits"))
        return str(ref)
    if role is not None and s.role != role:
        problems.append(problem(path, f"is a {s.role} split; only a {role} split may be used here", ref,
                                "use a pick split (pick, pick2, pick3...), never a report split"))
    return s.ref


def seed_list(v: Any, path: str, problems: list[str]) -> list[int]:
    if not isinstance(v, (list, tuple)) or not v:
        problems.append(problem(path, "expected a non-empty list of whole numbers", v, f"write {path}: [0, 1]"))
        return []
    for i, x in enumerate(v):
        check_int(problems, f"{path}[{i}]", x, i)
    if len(set(map(repr, v))) < len(v):
        problems.append(problem(path, "has a repeated value", v, "list each seed once"))
    return list(v)


def scorer_from(d: Any, problems: list[str]):
    if not isinstance(d, Mapping):
        problems.append(problem("scorer", "expected a mapping", d, "write scorer: {kind: full}"))
        return ScorerSpec()
    problems += [unknown_key("scorer.", k, SCORER) for k in d if k not in SCORER]
    s = {f.name: d.get(f.name, f.default) for f in fields(ScorerSpec)}
    if s["kind"] not in SCORER_KINDS:
        problems.append(problem("scorer.kind", f"must be one of {', '.join(SCORER_KINDS)}", s["kind"],
                                "write kind: full (the AxBench-style grades) or kind: light (inclusion and fluency)"))
    check_int(problems, "scorer.lexicon", s["lexicon"], 2, minimum=1)
    if isinstance(s["lexicon"], int) and not concepts(s["lexicon"]):
        problems.append(problem("scorer.lexicon", "no concept has a word list of this version", s["lexicon"],
                                "write lexicon: 2 (tight) or lexicon: 1 (broad)"))
    check_int(problems, "scorer.probe_layer", s["probe_layer"], 25)
    check_int(problems, "scorer.probe_tokens", s["probe_tokens"], 48, minimum=1)
    if s["probe_set"] != probe_set().version:
        problems.append(problem("scorer.probe_set", f"the probe set is at version {probe_set().version}", s["probe_set"],
                                f"write probe_set: {probe_set().version}, or check out the commit the run was made at"))
    s["fit_split"] = split_ref(s["fit_split"], "scorer.fit_split", problems, role="pick")
    _count(s["fit_prompts"], "scorer.fit_prompts", s["fit_split"], problems)
    s["fit_seeds"] = tuple(seed_list(s["fit_seeds"], "scorer.fit_seeds", problems))
    check_bool(problems, "scorer.shared_cache", s["shared_cache"])
    return ScorerSpec(**s)


def pick_rule(d: Any, problems: list[str]) -> str:
    if not isinstance(d, Mapping):
        problems.append(problem("pick", "expected a mapping", d, "write pick: {rule: margin}"))
        return PICK_RULES[0]
    problems += [unknown_key("pick.", k, ("rule",)) for k in d if k != "rule"]
    rule = d.get("rule", PICK_RULES[0])
    if rule not in PICK_RULES:
        problems.append(problem("pick.rule", f"must be one of {', '.join(PICK_RULES)}", rule, "write rule: margin"))
    return rule


def features_from(v: Any, app, lexicon: int, problems: list[str], needed: bool = True) -> list:
    """`features:` as a list of `FeatureRun`; `"config"` takes the app config's features at their own settings."""
    if v == "config" and app is not None:
        v = [{"layer": f.layer, "index": f.index} for f in app.features]
    if not isinstance(v, list) or (needed and not v):
        problems.append(problem("features", "expected a non-empty list of features, or config", v,
                                "write features: config, or list them: [{layer: 15, index: 8241, mode: add, strength: 32}]"))
        return []
    return [f for i, e in enumerate(v) if (f := _feature(e, f"features[{i}]", app, lexicon, problems)) is not None]


def _listed(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _strengths(e: Mapping, path: str, default: list, example: float, problems: list[str]) -> list:
    """The entry's finite strengths (one number or a list; `default` when left out), each bad one named by position."""
    given = e.get("strength")
    values = _listed(given) if "strength" in e else default
    where = [f"{path}.strength[{j}]" if isinstance(given, list) else f"{path}.strength" for j in range(len(values))]
    return [s for s, w in zip(values, where) if check_finite(problems, w, s, example)]


def _feature(e: Any, path: str, app, lexicon: int, problems: list[str]):
    if not isinstance(e, Mapping):
        problems.append(problem(path, "expected a mapping", e, "write {layer: 15, index: 8241, mode: add, strength: 32}"))
        return None
    before = len(problems)
    problems += [unknown_key(f"{path}.", k, FEATURE) for k in e if k not in FEATURE]
    if "vector" in e:
        return _vector_feature(e, path, lexicon, problems)
    check_int(problems, f"{path}.layer", e.get("layer"), 15)
    check_int(problems, f"{path}.index", e.get("index"), 8241)
    if len(problems) > before:
        return None
    mine = next((f for f in (app.features if app else ()) if (f.layer, f.index) == (e["layer"], e["index"])), None)
    where = f"L{e['layer']}:{e['index']} is not in the app config, so"
    modes = _listed(e["mode"]) if "mode" in e else [(mine.mode if mine else None) or (app.mode if app else "add")]
    for m in modes:
        if m not in MODES:
            problems.append(problem(f"{path}.mode", f"must be one of {', '.join(MODES)}", m, f"write mode: {MODES[0]}"))
    if "strength" not in e and mine is None:
        problems.append(problem(f"{path}.strength", f"{where} its strength must be given", None, "write strength: 30"))
    strengths = _strengths(e, path, [mine.strength] if mine else [], 30.0, problems)
    label = e.get("label", mine.label if mine else None)
    params = e.get("params") or {}
    if not isinstance(params, Mapping):
        problems.append(problem(f"{path}.params", "expected a mapping", params, "write params: {name: value}"))
        params = {}
    c = _concept(e.get("concept"), label, lexicon, path, problems)
    if len(problems) > before or c is None:
        return None
    f = FeatureRun(e["layer"], e["index"], tuple(modes), tuple(float(s) for s in strengths), c, label, dict(params))
    _check_specs(f, path, problems)
    return f if len(problems) == before else None


def _vector_feature(e: Mapping, path: str, lexicon: int, problems: list[str]):
    """A concept vector entry: `vector: {phrase, source, seed}` in place of `index`; its mode, strength and concept
    given (no app config setting to fall back on), no `params` (conditions and such belong to SAE features)."""
    before = len(problems)
    check_int(problems, f"{path}.layer", e.get("layer"), 20)
    if "index" in e:
        problems.append(problem(f"{path}.index", "a concept vector entry names no SAE feature", e["index"],
                                "write either index (an SAE feature) or vector (a concept vector)"))
    v = e["vector"]
    if not isinstance(v, Mapping):
        problems.append(problem(f"{path}.vector", "expected a mapping", v, "write vector: {phrase: dogs, source: generated}"))
        return None
    problems += [unknown_key(f"{path}.vector.", k, VECTOR) for k in v if k not in VECTOR]
    try:
        phrase = check_phrase(v.get("phrase"))
    except ValueError as err:
        problems.append(problem(f"{path}.vector.phrase", str(err), v.get("phrase"), "write phrase: dogs"))
        phrase = None
    source = v.get("source", "generated")
    if source not in SOURCES:
        problems.append(problem(f"{path}.vector.source", f"must be one of {', '.join(SOURCES)}", source,
                                "write source: generated"))
    check_int(problems, f"{path}.vector.seed", v.get("seed", 0), 0)
    modes = _listed(e.get("mode", "add"))
    for m in modes:
        if m not in MODES or m == "pin":
            problems.append(problem(f"{path}.mode", "must be one of the modes but pin (a concept vector has no encoder "
                                    "row to read)", m, "write mode: add"))
    if "strength" not in e:
        problems.append(problem(f"{path}.strength", "a concept vector's strength must be given", None, "write strength: 40"))
    strengths = _strengths(e, path, [], 40.0, problems)
    for m in modes:
        for st in strengths:
            if m in MODES and (why := strength_problem(m, float(st))) is not None:
                problems.append(problem(f"{path}.strength", why, st, f"use {MODE_INFO[m].limits[0]:g} to {MODE_INFO[m].limits[1]:g}"))
    if e.get("params"):
        problems.append(problem(f"{path}.params", "a concept vector entry takes no params", e["params"],
                                "leave params out (conditions apply to SAE features)"))
    label = e.get("label")
    c = _concept(e.get("concept", phrase if phrase and phrase in concept_names() else None), label, lexicon, path,
                 problems)
    if len(problems) > before or c is None or phrase is None:
        return None
    return FeatureRun(e["layer"], None, tuple(modes), tuple(float(s) for s in strengths), c, label,
                      vector=ConceptRecipe(phrase, source, int(v.get("seed", 0))))


def _concept(name: Any, label: Any, lexicon: int, path: str, problems: list[str]) -> str | None:
    known = ", ".join(concepts(lexicon)) if isinstance(lexicon, int) else ""
    if name is not None:
        try:
            return concept(str(name), lexicon).name
        except DataError as e:
            what = str(e) if str(name) in concept_names() else "no such concept"
            problems.append(problem(f"{path}.concept", what, name, f"write one of: {known}"))
            return None
    found = concept_for(label if isinstance(label, str) else None, lexicon) if isinstance(lexicon, int) else None
    if found is None:
        why = (f"its label {label!r} names no concept with lexicon version {lexicon}" if label
               else "the feature has no label to name one")
        problems.append(problem(f"{path}.concept", f"left out, and {why}",
                                None, f"write concept: one of {known}"))
        return None
    return found.name


def _check_specs(f, path: str, problems: list[str]) -> None:
    """Build the library's FeatureSpec of each setting, so its own checks (and unknown `params`) show now."""
    taken = {"layer", "index", "strength", "mode", "label"} & set(f.params)
    if taken:
        problems.append(problem(f"{path}.params", f"sets {', '.join(sorted(taken))}, which the feature entry sets",
                                dict(f.params), "write them as the entry's own fields"))
        return
    for mode, strength in f.settings:
        try:
            f.spec(mode, strength)
        except ConfigError as e:
            problems += [p.replace("feature.", f"{path}.", 1) for p in e.problems]
            return
        except TypeError:
            allowed = {x.name for x in fields(FeatureSpec)} - {"layer", "index", "strength", "mode", "label"}
            bad = sorted(set(f.params) - allowed)
            problems.append(problem(f"{path}.params", f"the library's FeatureSpec takes no {', '.join(bad)}",
                                    dict(f.params), f"use its fields: {', '.join(sorted(allowed))}"))
            return
