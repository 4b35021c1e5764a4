"""A visitor's steering setup, from a named-API call (`from_api`) or a share link, and the link that reproduces it.

Link format (URL query parameters, each optional, each checked on its own):
    s=L15:123=40,L15:7=off   strengths by feature key ("off" switches a feature off)
    mode=clamp               one of MODES, or own (each feature's own mode)
    m=L15:123=cap            a feature's own mode, by feature key
    c=L15:123=L15:9>2.5      a feature steered only where another fires above a threshold ("none": everywhere)
    add=L15:99,L12:5         features the visitor added at run time
    tokens=200 temp=0.7 top_p=0.9 rep=1.1 seed=3|random
    compare=1                show the unsteered answer beside the steered one
A bad parameter gives a warning and keeps that part of the defaults; parameters this format
does not know (Spaces adds its own) are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from steering.config import MODES, Condition, ConfigError, GenerationSettings
from steering.keys import FeatureKey
from steering.service import inputs
from steering.service.messages import generation_settings

MAX_QUERY_CHARS = 2048


@dataclass(frozen=True)
class SteeringSetup:
    """Everything one visitor has set: per request, never shared between visitors."""

    strengths: Mapping[FeatureKey, float | None] = field(default_factory=dict)
    mode: str | None = None
    """One mode for every feature; None: each feature's own (`modes`, else its configured one)."""
    custom: tuple[FeatureKey, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    compare: bool = False
    modes: Mapping[FeatureKey, str] = field(default_factory=dict)
    """The visitor's mode per feature, over the configured one."""
    conditions: Mapping[FeatureKey, Condition | None] = field(default_factory=dict)
    """The visitor's condition per feature, over the configured one (None: steer every position)."""

    def __post_init__(self) -> None:
        """Feature keys given as text (`"L15:3"`) or pairs become `FeatureKey`s, here and nowhere else."""
        for name in ("strengths", "modes", "conditions"):
            object.__setattr__(self, name, {FeatureKey.parse(k): v for k, v in getattr(self, name).items()})
        object.__setattr__(self, "custom", tuple(FeatureKey.parse(k) for k in self.custom))


def parse_key(text: str) -> FeatureKey:
    """`L15:123` -> FeatureKey(15, 123) (`FeatureKey.parse`, kept under the share link's name)."""
    return FeatureKey.parse(text)


def from_api(defaults: SteeringSetup, known: Callable[[tuple[FeatureKey, ...]], Sequence[FeatureKey]], strengths, mode,
             add_features, generation: Sequence) -> SteeringSetup:
    """The setup a named-API call describes, each argument checked by name; None keeps the default.

    `known(added)` lists the features a strength may name (the configured ones and `added`): a strength for
    any other is refused, since it would steer nothing while the caller believes it did.
    A strength may be an object `{"strength": 40, "mode": "cap", "condition": {"feature": "L15:9", "above": 2}}`
    that also sets that feature's own mode and condition.
    """
    custom = inputs.feature_keys(add_features, "add_features")
    mode = inputs.choice("own" if mode is None else mode, "mode", (*MODES, "own"))
    given, modes, conditions = inputs.feature_settings(strengths, None if mode == "own" else mode)
    inputs.known_keys(list(given), list(known(custom)), "strengths", "add a feature with add_features first")
    g = defaults.generation
    own = (g.max_new_tokens, g.temperature, g.top_p, g.repetition_penalty, -1 if g.seed is None else g.seed)
    settings = generation_settings(*(mine if value is None else value for value, mine in zip(generation, own, strict=True)))
    return replace(defaults, strengths=dict(defaults.strengths) | given, mode=None if mode == "own" else mode, custom=custom,
                   generation=settings, modes=dict(defaults.modes) | modes, conditions=dict(defaults.conditions) | conditions)


def to_query(setup: SteeringSetup, defaults: SteeringSetup) -> str:
    """The query string for `setup`, naming only what differs from `defaults`."""
    params: dict[str, str] = {}
    changed = {k: v for k, v in setup.strengths.items() if defaults.strengths.get(k, 0.0) != v or k not in defaults.strengths}
    if changed:
        params["s"] = ",".join(f"{k}={'off' if v is None else _number(v)}" for k, v in changed.items())
    if setup.mode != defaults.mode:
        params["mode"] = setup.mode or "own"
    modes = {k: m for k, m in setup.modes.items() if defaults.modes.get(k) != m}
    if modes:
        params["m"] = ",".join(f"{k}={m}" for k, m in modes.items())
    conditions = {k: c for k, c in setup.conditions.items() if k not in defaults.conditions or defaults.conditions[k] != c}
    if conditions:
        params["c"] = ",".join(f"{k}={'none' if c is None else f'{c.feature}>{_number(c.above)}'}" for k, c in conditions.items())
    if setup.custom:
        params["add"] = ",".join(str(key) for key in setup.custom)
    g, d = setup.generation, defaults.generation
    for name, attr in (("tokens", "max_new_tokens"), ("temp", "temperature"), ("top_p", "top_p"), ("rep", "repetition_penalty")):
        if getattr(g, attr) != getattr(d, attr):
            params[name] = _number(getattr(g, attr))
    if g.seed != d.seed:
        params["seed"] = "random" if g.seed is None else str(g.seed)
    if setup.compare != defaults.compare:
        params["compare"] = "1" if setup.compare else "0"
    return urlencode(params, safe=":,=")


def from_query(params: Mapping[str, str], defaults: SteeringSetup, n_layers: int, d_sae: int | None) -> tuple[SteeringSetup, list[str]]:
    """The setup a link describes, and warnings for every part that was ignored."""
    warnings: list[str] = []
    size = sum(len(str(k)) + len(str(v)) + 2 for k, v in params.items())
    if size > MAX_QUERY_CHARS:
        return defaults, [f"The share link is too long ({size} characters, limit {MAX_QUERY_CHARS}); the default setup is shown."]
    setup = defaults

    def warn(name: str, value: str, why: str) -> None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        warnings.append(f"Share link parameter {name}={shown!r} was ignored: {why}.")

    if "add" in params:
        try:
            custom = tuple(dict.fromkeys(_feature_in_range(parse_key(k), n_layers, d_sae) for k in params["add"].split(",") if k.strip()))
            setup = replace(setup, custom=custom)
        except ValueError as exc:
            warn("add", params["add"], str(exc))
    if "s" in params:
        try:
            strengths = dict(setup.strengths)
            for item in params["s"].split(","):
                key, _, value = item.partition("=")
                strengths[_feature_in_range(parse_key(key), n_layers, d_sae)] = None if value.strip() == "off" else _finite(value)
            setup = replace(setup, strengths=strengths)
        except ValueError as exc:
            warn("s", params["s"], str(exc))
    if "mode" in params:
        if params["mode"] in MODES or params["mode"] == "own":
            setup = replace(setup, mode=None if params["mode"] == "own" else params["mode"])
        else:
            warn("mode", params["mode"], f"use one of {', '.join(MODES)}, own")
    for name, read, attr in (("m", _mode, "modes"), ("c", _condition, "conditions")):
        if name in params:
            try:
                found = dict(getattr(setup, attr))
                for item in params[name].split(","):
                    key, _, value = item.partition("=")
                    key = _feature_in_range(parse_key(key), n_layers, d_sae)
                    found[key] = read(value.strip(), key, n_layers, d_sae)
                setup = replace(setup, **{attr: found})
            except ValueError as exc:
                warn(name, params[name], str(exc))
    gen = setup.generation
    for name, attr, cast in (("tokens", "max_new_tokens", _int), ("temp", "temperature", _finite), ("top_p", "top_p", _finite), ("rep", "repetition_penalty", _finite), ("seed", "seed", _seed)):
        if name in params:
            try:
                gen = replace(gen, **{attr: cast(params[name])})
            except (ValueError, ConfigError) as exc:
                warn(name, params[name], str(exc).splitlines()[-1])
    setup = replace(setup, generation=gen)
    if "compare" in params:
        if params["compare"] in ("0", "1"):
            setup = replace(setup, compare=params["compare"] == "1")
        else:
            warn("compare", params["compare"], "use 1 or 0")
    return setup, warnings


def _feature_in_range(feature: FeatureKey, n_layers: int, d_sae: int | None) -> FeatureKey:
    layer, index = feature
    if layer >= n_layers:
        raise ValueError(f"layer {layer} is outside this model (0..{n_layers - 1})")
    if d_sae is not None and index >= d_sae:
        raise ValueError(f"feature {index} is outside the SAE (0..{d_sae - 1})")
    return feature


def _mode(text: str, key: FeatureKey, n_layers: int, d_sae: int | None) -> str:
    if text not in MODES:
        raise ValueError(f"{text!r} is not a mode; use one of {', '.join(MODES)}")
    return text


def _condition(text: str, key: FeatureKey, n_layers: int, d_sae: int | None) -> Condition | None:
    """`L15:9>2.5` (steer `key` where L15:9 fires above 2.5) or `none`."""
    if text == "none":
        return None
    feature, sep, above = text.partition(">")
    if not sep:
        raise ValueError(f"{text!r} is not a condition; write FEATURE>THRESHOLD, e.g. L15:9>2.5, or none")
    found = Condition(_feature_in_range(parse_key(feature), n_layers, d_sae), _finite(above))
    if found.feature.layer > key.layer:
        raise ValueError(f"{found.feature} is read after the steered layer {key.layer}")
    return found


def _number(value: float) -> str:
    """Shortest text that reads back as the same number: ints as digits, floats by repr."""
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _int(text: str) -> int:
    if not re.fullmatch(r"\d{1,7}", text.strip()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _seed(text: str) -> int | None:
    return None if text.strip() == "random" else _int(text)
