"""The share link of a visitor's setup (`to_query`) and the setup a link describes (`from_query`).

Link format (URL query parameters, each optional):
    s=L15:123=40,L15:7=off   strengths by feature key ("off" switches a feature off)
    m=L15:123=clamp          each feature's own mode (one of MODES)
    c=L15:123=L15:9>2.5      a feature steered only where another fires above a threshold ("none": everywhere)
    mode=clamp               one mode for every feature (older links; own: each feature's own)
    add=L15:99,L12:5         features the visitor added at run time
    cv=L15:dogs=40;clamp     concept vectors by recipe: layer, phrase, strength, then a mode (default add),
                             generated (examples the model writes; default: written) and off (switched off)
    tokens=200 temp=0.7 top_p=0.9 rep=1.1 seed=3|random
    compare=1                show the unsteered answer beside the steered one
Every part is checked by the validators the API uses (`inputs`, `GenerationSettings.parse`); a bad part
is named in a warning and the rest of the link still applies. Parameters starting with "__" belong to
the host (Spaces adds its own) and are left alone; any other unknown parameter is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from steering.config import MODES, Condition, GenerationSettings
from steering.config.generation import RANDOM_SEED, SettingsError, shown
from steering.keys import FeatureKey
from steering.service import inputs
from steering.config.modes import strength_problem
from steering.inspection.concept_vector import SOURCES, check_phrase
from steering.service.concepts import CONCEPT_MODES, MAX_CONCEPTS, ConceptChoice
from steering.service.setup import ModeChoice, SteeringSetup

MAX_QUERY_CHARS = 2048
LINK_NAMES = {"max_new_tokens": "tokens", "temperature": "temp", "top_p": "top_p", "repetition_penalty": "rep", "seed": "seed"}
"""A link's parameter for each generation setting."""
LINK_PARAMS = ("s", "m", "c", "mode", "add", "cv", *LINK_NAMES.values(), "compare")


def to_query(setup: SteeringSetup, defaults: SteeringSetup, configured: Callable[[FeatureKey], str] | None = None) -> str:
    """The query string for `setup`, naming only what differs from `defaults`; `configured(key)` is a
    feature's mode in the config (a mode equal to it is not written)."""
    params: dict[str, str] = {}
    changed = {k: v for k, v in setup.strengths.items() if defaults.strengths.get(k, 0.0) != v or k not in defaults.strengths}
    if changed:
        params["s"] = ",".join(f"{k}={'off' if v is None else _number(v)}" for k, v in changed.items())
    own = {k: c for k, c in setup.modes.items() if configured is None or c != ModeChoice(setup.mode or configured(k))}
    if own:
        params["m"] = ",".join(f"{k}={c.mode}" + "".join(f";{p}={v}" for p, v in c.params.items()) for k, c in own.items())
    conditions = {k: c for k, c in setup.conditions.items() if k not in defaults.conditions or defaults.conditions[k] != c}
    if conditions:
        params["c"] = ",".join(f"{k}={'none' if c is None else f'{c.feature}>{_number(c.above)}'}"
                               for k, c in conditions.items())
    if setup.mode != defaults.mode:
        params["mode"] = setup.mode or "own"
    if setup.custom:
        params["add"] = ",".join(str(key) for key in setup.custom)
    g, d = setup.generation, defaults.generation
    for attr, name in LINK_NAMES.items():
        if getattr(g, attr) != getattr(d, attr):
            value = getattr(g, attr)
            params[name] = "random" if value is None else _number(value)
    if setup.compare != defaults.compare:
        params["compare"] = "1" if setup.compare else "0"
    if setup.concepts != defaults.concepts:
        params["cv"] = ",".join(_concept_item(c) for c in setup.concepts)
    return urlencode(params, safe=":,=;")


def _concept_item(c: ConceptChoice) -> str:
    suffix = ("" if c.mode == "add" else f";{c.mode}") + ("" if c.source == "written" else f";{c.source}")
    return f"L{c.layer}:{c.phrase}={_number(c.strength)}{suffix}{'' if c.enabled else ';off'}"


def from_query(params: Mapping[str, str], defaults: SteeringSetup, n_layers: int, d_sae: int | None,
               known: Callable[[tuple[FeatureKey, ...]], Sequence[FeatureKey]] | None = None) -> tuple[SteeringSetup, list[str]]:
    """The setup a link describes, and a warning naming every part that was ignored, and why.

    `known(added)` lists the features a strength or a mode may name (default: those in `defaults` and `added`).
    """
    size = sum(len(str(k)) + len(str(v)) + 2 for k, v in params.items())
    if size > MAX_QUERY_CHARS:
        return defaults, [f"The share link is too long ({size} characters, limit {MAX_QUERY_CHARS}); the default setup is shown."]
    link = _Link(params, n_layers, d_sae)
    custom = tuple(dict.fromkeys(k for k in (link.feature(item, "add") for item in link.items("add")) if k is not None))
    here = set(known(custom) if known is not None else [*defaults.strengths, *custom])
    strengths, modes = dict(defaults.strengths), dict(defaults.modes)
    for item in link.items("s"):
        key, value = link.pair(item, "s", here)
        if key is not None:
            strength = link.strength(item, key, value)
            if strength is not _BAD:
                strengths[key] = strength
    for item in link.items("m"):
        key, value = link.pair(item, "m", here)
        if key is not None:
            choice = link.mode(item, value)
            if choice is not None:
                modes[key] = choice
    conditions = dict(defaults.conditions)
    for item in link.items("c"):
        key, value = link.pair(item, "c", here)
        if key is not None:
            condition = link.condition(item, key, value)
            if condition is not _BAD:
                conditions[key] = condition
    setup = replace(defaults, custom=custom, strengths=strengths, modes=modes, conditions=conditions)
    if "mode" in params:
        if params["mode"] in (*MODES, "own"):
            setup = replace(setup, mode=None if params["mode"] == "own" else params["mode"])
        else:
            link.ignored(f"mode={params['mode']}", f"the mode must be one of {', '.join(MODES)} or own")
    gen = setup.generation
    for attr, name in LINK_NAMES.items():
        if name in params:
            try:
                gen = GenerationSettings.parse({attr: _link_number(params[name], name == "seed")}, gen, LINK_NAMES)
            except SettingsError as exc:
                link.ignored(f"{name}={params[name]}", str(exc).rstrip("."))
    setup = replace(setup, generation=gen)
    if "cv" in params:
        found = tuple(c for c in (link.concept(item) for item in link.items("cv")) if c is not None)
        for c in found[MAX_CONCEPTS:]:
            link.ignored(f"cv={c.name}", f"a link steers with at most {MAX_CONCEPTS} concept vectors")
        setup = replace(setup, concepts=found[:MAX_CONCEPTS])
    if "compare" in params:
        if params["compare"] in ("0", "1"):
            setup = replace(setup, compare=params["compare"] == "1")
        else:
            link.ignored(f"compare={params['compare']}", "compare must be 1 (show the unsteered answer) or 0")
    for name in params:
        if name not in LINK_PARAMS and not str(name).startswith("__"):
            link.ignored(f"{name}={params[name]}", f"it is not a share link parameter (they are {', '.join(LINK_PARAMS)})")
    return setup, link.warnings


_BAD = object()


class _Link:
    """One link being read: its parameters and the warnings so far."""

    def __init__(self, params: Mapping[str, str], n_layers: int, d_sae: int | None):
        self.params, self.n_layers, self.d_sae = params, n_layers, d_sae
        self.warnings: list[str] = []

    def ignored(self, part: str, why: str) -> None:
        self.warnings.append(f"The share link's {shown(part)} was ignored: {why}.")

    def items(self, name: str) -> list[str]:
        return [item for item in str(self.params.get(name, "")).split(",") if item.strip()]

    def feature(self, text: str, name: str, part: str | None = None) -> FeatureKey | None:
        """A feature key that exists in this model and SAE, or None with the part (default: the key) named."""
        part = f"{name}={text if part is None else part}"
        try:
            key = FeatureKey.parse(text)
        except ValueError:
            self.ignored(part, f"{shown(text.strip())} is not a feature key: write {inputs.KEY_FORM}")
            return None
        if key.layer >= self.n_layers:
            self.ignored(part, f"layer {key.layer} does not exist: this model has layers 0 to {self.n_layers - 1}")
            return None
        if self.d_sae is not None and key.index >= self.d_sae:
            self.ignored(part, f"feature {key.index} does not exist: this SAE has features 0 to {self.d_sae - 1}")
            return None
        return key

    def pair(self, item: str, name: str, here: set[FeatureKey]) -> tuple[FeatureKey | None, str]:
        """`KEY=VALUE` with a key that names a feature of this page (configured, or added with add=)."""
        text, sep, value = item.partition("=")
        key = self.feature(text, name, item)
        if key is not None and not sep:
            example = {"s": "40", "m": "clamp", "c": "L15:9>2.5"}[name]
            self.ignored(f"{name}={item}", f"write = and a value after the feature key, e.g. {name}={key}={example}")
            return None, value
        if key is not None and key not in here:
            self.ignored(f"{name}={item}", f"{key} is not a feature of this page; add it with add={key} first")
            return None, value
        return key, value

    def strength(self, item: str, key: FeatureKey, value: str, what: str | None = None, name: str = "s") -> float | None | object:
        if value.strip() == "off":
            return None
        try:
            number = float(value)
        except (ValueError, OverflowError):
            number = math.nan
        if math.isfinite(number):
            return number
        self.ignored(f"{name}={item}", f"{what or f'the strength of {key}'} must be a finite number or off, got {shown(value)}")
        return _BAD

    def concept(self, item: str) -> ConceptChoice | None:
        """`L15:dogs=40;clamp;generated`: a concept vector's recipe, strength, mode and source."""
        head, sep, rest = item.partition("=")
        layer, _, phrase = head.partition(":")
        value, *options = rest.split(";")
        mode = next((o for o in options if o in CONCEPT_MODES), "add")
        source = next((o for o in options if o in SOURCES), "written")
        unknown = [o for o in options if o not in CONCEPT_MODES and o not in SOURCES and o != "off"]
        where = f"cv={item}"
        if not sep or not layer.startswith("L") or not layer[1:].isdigit():
            self.ignored(where, "write L, the layer, a colon, the phrase, = and a strength, e.g. cv=L15:dogs=40")
        elif int(layer[1:]) >= self.n_layers:
            self.ignored(where, f"layer {int(layer[1:])} does not exist: this model has layers 0 to {self.n_layers - 1}")
        elif unknown:
            self.ignored(where, f"{shown(unknown[0])} is neither a mode ({', '.join(CONCEPT_MODES)}) nor a source "
                                f"({', '.join(SOURCES)})")
        else:
            try:
                phrase = check_phrase(phrase)
            except ValueError as exc:
                self.ignored(where, str(exc))
                return None
            strength = self.strength(item, None, value, f"the strength of {phrase!r}", "cv")
            if strength is _BAD:
                return None
            if strength is not None and strength_problem(mode, strength) is not None:
                self.ignored(where, f"mode {mode} takes an angle from 0 to 180 degrees, got {shown(value)}")
                return None
            return ConceptChoice(int(layer[1:]), phrase, source, 0.0 if strength is None else strength, mode,
                                 enabled=strength is not None and "off" not in options)
        return None

    def mode(self, item: str, value: str) -> ModeChoice | None:
        name, *params = value.split(";")
        if name not in MODES:
            self.ignored(f"m={item}", f"the mode must be one of {', '.join(MODES)}, got {shown(name)}")
        elif params:
            self.ignored(f"m={item}", f"mode {name} takes no parameters, got {shown(';'.join(params))}")
        else:
            return ModeChoice(name)
        return None


    def condition(self, item: str, key: FeatureKey, value: str) -> Condition | None | object:
        """`L15:9>2.5` (steer `key` where L15:9 fires above 2.5) or `none`."""
        if value.strip() == "none":
            return None
        text, sep, above = value.partition(">")
        if not sep:
            self.ignored(f"c={item}", f"write FEATURE>THRESHOLD after the feature key, e.g. c={key}=L15:9>2.5, or none")
            return _BAD
        feature = self.feature(text, "c", item)
        if feature is None:
            return _BAD
        if feature.layer > key.layer:
            self.ignored(f"c={item}", f"{feature} is read at layer {feature.layer}, after the steered layer {key.layer}")
            return _BAD
        threshold = _link_number(above)
        if not isinstance(threshold, (int, float)):
            self.ignored(f"c={item}", f"the threshold must be a finite number, got {shown(above)}")
            return _BAD
        return Condition(feature, float(threshold))


def _link_number(text: str, seed: bool = False) -> Any:
    """A link's number as a number (a whole one as an int), for the validators; text that is none stays text,
    so the validator's refusal shows it."""
    text = text.strip()
    if seed and text == "random":
        return RANDOM_SEED
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _number(value: float) -> str:
    """Shortest text that reads back as the same number: ints as digits, floats by repr."""
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
