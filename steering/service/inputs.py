"""The type and shape of every argument a visitor sends (UI or named API), checked where it enters.

Each validator takes the value and the argument's name and returns the plain value, or raises `UserError`
with `NAME must be EXPECTED, got VALUE.`: the argument's name, the value (repr, cut short) and what to send
instead, so an API caller can fix the call without reading code. `None` means "the default" wherever an
argument has one; the callers decide what that default is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from steering.config.modes import MODES, Condition, strength_problem
from steering.config.generation import SHOWN_CHARS, finite_number, shown  # noqa: F401 (shown, SHOWN_CHARS: this module's API)
from steering.keys import FeatureKey
from steering.service.limits import UserError

KEY_FORM = "L, the layer, a colon and the feature index, e.g. L15:123"
MESSAGE_FORM = '{"role": "user" or "assistant", "content": text or a list of {"type": "text", "text": ...} parts}'


def refuse(name: str, expected: str, value: Any, hint: str = "") -> UserError:
    return UserError(f"{name} must be {expected}, got {shown(value)}{hint}.")


def text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise refuse(name, "text", value)
    return value


def _span(kind: str, lo: float | None, hi: float | None, above: bool) -> str:
    if lo is not None and hi is not None:
        return f"{kind} > {lo:g} and <= {hi:g}" if above else f"{kind} from {lo:g} to {hi:g}"
    if lo is not None:
        return f"{kind} {'>' if above else '>='} {lo:g}"
    return kind if hi is None else f"{kind} <= {hi:g}"


def number(value: Any, name: str, lo: float | None = None, hi: float | None = None, above: bool = False) -> float:
    """A finite number (not a bool, not text) in [lo, hi], or (lo, hi] with `above`."""
    ok = finite_number(value) and (lo is None or (value > lo if above else value >= lo)) and (hi is None or value <= hi)
    if not ok:
        raise refuse(name, _span("a finite number", lo, hi, above), value)
    return float(value)


def whole_number(value: Any, name: str, lo: int | None = None, hi: int | None = None, what: str | None = None) -> int:
    """An int, or a float that is one (JSON clients send 8.0), in [lo, hi]; `what` words the expectation."""
    ok = finite_number(value) and float(value).is_integer() and (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        raise refuse(name, what or _span("a whole number", lo, hi, False), value)
    return int(value)


def choice(value: Any, name: str, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise refuse(name, f"one of {', '.join(options)}", value)
    return value


def mode(value: Any, name: str) -> str:
    """A steering mode, one of `MODES`."""
    return choice(value, name, MODES)


def strength(value: Any, name: str, mode: str) -> float:
    """A finite strength that `mode` accepts (an angle from 0 to 180 for the angular modes)."""
    found = number(value, name)
    if strength_problem(mode, found) is not None:
        raise refuse(name, f"an angle from 0 to 180 degrees for mode {mode} (90 removes the feature)", value)
    return found


CONDITION_FORM = '{"feature": "L15:123", "above": 2.0}'


def condition(value: Any, name: str, steered_layer: int) -> Condition | None:
    """`{"feature": "L15:123", "above": 2.0}`: steer only where that feature fires above the threshold; it must
    be read at the steered layer or before. None is no condition."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise refuse(name, f"an object {CONDITION_FORM} or null", value)
    extra = sorted(set(value) - {"feature", "above"})
    if extra:
        raise UserError(f"{name}.{extra[0]}: not a condition field (it would be ignored). A condition has feature "
                        f"and above, e.g. {CONDITION_FORM}.")
    key = feature_key(value.get("feature"), f"{name}.feature")
    above = number(value.get("above"), f"{name}.above")
    if key.layer > steered_layer:
        raise UserError(f"{name}.feature: {key} is read at layer {key.layer}, after the steered layer {steered_layer}, "
                        f"so it is not known when the edit runs. Use a feature at layer {steered_layer} or earlier.")
    return Condition(key, above)


def feature_key(value: Any, name: str) -> FeatureKey:
    """Worded as `FeatureKey.parse` words it (share links, configs), with the argument's name first."""
    try:
        return FeatureKey.parse(value)
    except ValueError:
        raise UserError(f"{name}: {shown(value)} is not a feature key: write {KEY_FORM}.") from None


def feature_keys(value: Any, name: str) -> tuple[FeatureKey, ...]:
    """A list of feature keys (duplicates dropped); None is none."""
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise refuse(name, 'a list of feature keys, e.g. ["L15:123"]', value)
    return tuple(dict.fromkeys(feature_key(k, f"{name}[{i}]") for i, k in enumerate(value)))


def strengths(value: Any, name: str = "strengths") -> dict[FeatureKey, float | None]:
    """Feature key -> finite strength, or None for off; None is no change."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise refuse(name, 'an object of feature key -> strength, e.g. {"L15:3": 40, "L15:7": null}', value)
    found: dict[FeatureKey, float | None] = {}
    for k, v in value.items():
        key = feature_key(k, name)
        if v is not None and not finite_number(v):
            raise refuse(f"{name}[{shown(k)}]", "a finite number, or null to switch the feature off", v)
        found[key] = v
    return found


def feature_settings(value: Any, every: str | None, name: str = "strengths") -> tuple[dict, dict, dict]:
    """`strengths` whose values may also be objects `{"strength", "mode", "condition"}`: (strengths, modes,
    conditions) by feature key. `every` is the mode set for all features at once, which a feature's own mode
    would contradict; strengths are checked against the mode that will apply where it is known here."""
    found, modes, conditions = {}, {}, {}
    plain = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(v, Mapping):
                plain[k] = v
                continue
            key, where = feature_key(k, name), f"{name}[{shown(k)}]"
            extra = sorted(set(v) - {"strength", "mode", "condition"})
            if extra:
                raise UserError(f"{where}.{extra[0]}: not a feature setting (it would be ignored). Use strength, mode "
                                "or condition.")
            if v.get("mode") is not None:
                if every is not None:
                    raise UserError(f"{where}.mode: mode {every!r} is set for every feature, which would override "
                                    f"this one. Send mode \"own\" to use each feature's own mode.")
                modes[key] = mode(v["mode"], f"{where}.mode")
            s = v.get("strength")
            found[key] = None if s is None else strength(s, f"{where}.strength", every or modes.get(key, "add"))
            if "condition" in v:
                conditions[key] = condition(v["condition"], f"{where}.condition", key.layer)
    found |= strengths(plain if isinstance(value, Mapping) else value, name)
    return found, modes, conditions


def known_keys(keys: Sequence[FeatureKey], known: Sequence[FeatureKey], name: str, how_to_add: str) -> None:
    """Refuse a key that names no feature here: a strength for it would silently do nothing."""
    here = frozenset(known)
    unknown = [k for k in keys if k not in here]
    if unknown:
        listed = ", ".join(map(str, known[:30])) + (", ..." if len(known) > 30 else "")
        raise UserError(f"{name} names {', '.join(map(str, unknown[:5]))}, which {'is' if len(unknown) == 1 else 'are'} "
                        f"not a feature here. The features are {listed or 'none yet'}; {how_to_add}.")


def _content(value: Any, name: str) -> str:
    """A message's text: a string, a text part, or a list of them (Gradio 6 sends parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if value.get("type", "text") != "text" or not isinstance(value.get("text"), str):
            raise refuse(name, 'a text part {"type": "text", "text": ...} (only text is read)', value)
        return value["text"]
    if isinstance(value, (list, tuple)):
        return "".join(_content(part, f"{name}[{i}]") for i, part in enumerate(value))
    raise refuse(name, 'text or a list of {"type": "text", "text": ...} parts', value)


def history(value: Any, name: str = "history") -> list[dict]:
    """Chat messages as `{"role", "content": str}` turns (text not yet cleaned); None is no history."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise refuse(name, 'a list of messages, e.g. [{"role": "user", "content": "Hi"}]', value)
    turns = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, Mapping):
            pairs = " (the old [user, assistant] pairs format is not read)" if isinstance(message, (list, tuple)) else ""
            raise refuse(where, f"a message {MESSAGE_FORM}", message, pairs)
        role = message.get("role")
        if role not in ("user", "assistant"):
            system = " (the system prompt is the model's own and cannot be set)" if role == "system" else ""
            raise refuse(f"{where}.role", '"user" or "assistant"', role, system)
        turns.append({"role": role, "content": _content(message.get("content"), f"{where}.content")})
    return turns


def arguments(endpoint: str, names: Sequence[str], defaults: Sequence[Any], values: list) -> list:
    """A named endpoint's values: too many refused, missing ones (raw HTTP callers may stop early) given
    their defaults; `defaults` holds None for a required argument, which its own check then refuses."""
    if len(values) > len(names):
        takes = f"{len(names)} argument(s) ({', '.join(names)})" if names else "no arguments"
        raise UserError(f"{endpoint} takes {takes}, got {len(values)}; the extra value(s) "
                        f"{shown(values[len(names):])} would be ignored. Remove them.")
    return [*values, *defaults[len(values):]]
