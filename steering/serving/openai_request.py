"""An OpenAI chat-completions request, checked and turned into the engine's terms (messages, plan, settings).

The request may carry a `steering` object (our extension, sent by the `openai` client through `extra_body`):
    {"features": [{"key": "L15:8672", "strength": 40, "mode": "clamp"},
                  {"key": "L15:8241", "strength": 30, "mode": "add", "condition": {"feature": "L15:100", "above": 2.0}}],
     "mode": "add", "steer_special_tokens": true, "generated_only": false}
`mode` is one of `steering.config.MODES` (per feature, or for all at once); an angular mode's strength is an
angle in degrees. A `condition` steers that feature only where another feature fires above a threshold.
Absent: the config's default features. `null` or no features: unsteered. Every refusal is a `UserError`
naming the field (`steering.features[0].strength`), the value and the fix; the server answers it with 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steering.config import FeatureSpec, GenerationSettings
from steering.service import inputs
from steering.service.limits import UserError
from steering.service.messages import generation_settings
from steering.steer.plan import SteeringPlan

MAX_FEATURES = 32


@dataclass
class ChatRequest:
    messages: list[dict]
    system_prompt: str | None | type(...)
    plan: SteeringPlan
    settings: GenerationSettings
    stream: bool
    model: str


def parse(body: Any, engine) -> ChatRequest:
    if not isinstance(body, Mapping):
        raise inputs.refuse("the request body", "a JSON object", body)
    known = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stream",
             "repetition_penalty", "steering", "n", "stream_options", "user"}
    extra = sorted(set(body) - known)
    if extra:
        raise UserError(f"{', '.join(extra)}: not read by this server (it would be ignored). Remove "
                        f"{'it' if len(extra) == 1 else 'them'}; the fields read are {', '.join(sorted(known))}.")
    if body.get("n", 1) != 1:
        raise inputs.refuse("n", "1 (one answer per request)", body.get("n"))
    system, messages = _messages(body.get("messages"))
    return ChatRequest(messages, system, _plan(body["steering"], engine) if "steering" in body else engine.plan(),
                       _settings(body, engine.config.generation), _flag(body.get("stream", False), "stream"),
                       str(body.get("model") or engine.config.model))


def _messages(value: Any):
    if not isinstance(value, list) or not value:
        raise inputs.refuse("messages", 'a non-empty list of messages, e.g. [{"role": "user", "content": "Hi"}]', value)
    system = ...
    if isinstance(value[0], Mapping) and value[0].get("role") in ("system", "developer"):
        system = inputs._content(value[0].get("content"), "messages[0].content")
        value = value[1:]
    turns = inputs.history(value, "messages")
    if not turns or turns[-1]["role"] != "user":
        raise UserError("messages must end with a user message: the server answers the last user turn.")
    return system, turns


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise inputs.refuse(name, "true or false", value)
    return value


def _settings(body: Mapping, base: GenerationSettings) -> GenerationSettings:
    """The request's settings through the one parser (`GenerationSettings.parse`), under OpenAI's names; an
    absent or null field keeps the config's value, except `seed: null`, which asks for a random seed."""
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    given = {"max_new_tokens": tokens, **{k: body.get(k) for k in ("temperature", "top_p", "repetition_penalty")}}
    given = {k: v for k, v in given.items() if v is not None}
    if "seed" in body:
        given["seed"] = body["seed"]
    names = {"max_new_tokens": "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"}
    return generation_settings(given, base, names)


def _plan(value: Any, engine) -> SteeringPlan:
    """The request's plan; an empty one (not None, which the engine reads as "its defaults") when unsteered."""
    if value is None:
        return SteeringPlan()
    if not isinstance(value, Mapping):
        raise inputs.refuse("steering", 'an object {"features": [{"key": "L15:123", "strength": 40}]} or null', value)
    extra = sorted(set(value) - {"features", "mode", "steer_special_tokens", "generated_only"})
    if extra:
        raise UserError(f"steering.{extra[0]}: not a steering field (it would be ignored). Use features, mode, "
                        "steer_special_tokens or generated_only.")
    mode = None if value.get("mode") is None else inputs.mode(value["mode"], "steering.mode")
    special, generated = _optional_flag(value, "steer_special_tokens"), _optional_flag(value, "generated_only")
    items = value.get("features") or []
    if not isinstance(items, list):
        raise inputs.refuse("steering.features", 'a list of {"key": "L15:123", "strength": 40, "mode": "add"}', items)
    if len(items) > MAX_FEATURES:
        raise UserError(f"steering.features has {len(items)} features; at most {MAX_FEATURES} are steered at once. "
                        "Send fewer.")
    features, strengths = [], {}
    for i, item in enumerate(items):
        where = f"steering.features[{i}]"
        if not isinstance(item, Mapping):
            raise inputs.refuse(where, '{"key": "L15:123", "strength": 40}', item)
        unread = sorted(set(item) - {"key", "strength", "mode", "condition"})
        if unread:
            raise UserError(f"{where}.{unread[0]}: not a feature field (it would be ignored). Use key, strength, mode "
                            "or condition.")
        key = inputs.feature_key(item.get("key"), f"{where}.key")
        if key in strengths:
            raise UserError(f"{where}.key: {key} is listed twice. Keep one entry per feature.")
        _check_feature(engine, key, f"{where}.key")
        own = None if item.get("mode") is None else inputs.mode(item["mode"], f"{where}.mode")
        strengths[key] = inputs.strength(item.get("strength"), f"{where}.strength", mode or own or engine.config.mode)
        condition = inputs.condition(item.get("condition"), f"{where}.condition", key.layer)
        features.append(FeatureSpec(layer=key.layer, index=key.index, mode=own, condition=condition))
        if (mode or own or engine.config.mode) == "pin" and engine.config.sae is None:
            raise UserError(f"{where}.mode: pin needs the SAE's encoder, and this server's config names no SAE. "
                            "Use add or clamp.")
        if condition is not None:
            if engine.config.sae is None:
                raise UserError(f"{where}.condition: a condition reads a feature by the SAE's encoder, and this "
                                "server's config names no SAE. Remove the condition.")
            _check_feature(engine, condition.feature, f"{where}.condition.feature")
    if not features:
        return SteeringPlan()
    return engine.plan_resolved(strengths, mode, features, special, generated)


def _optional_flag(value: Mapping, name: str) -> bool | None:
    return None if value.get(name) is None else _flag(value[name], f"steering.{name}")


def _check_feature(engine, key, where: str) -> None:
    if not 0 <= key.layer < engine.n_layers:
        raise UserError(f"{where}: layer {key.layer} is outside this model (0..{engine.n_layers - 1}). "
                        "Use a layer the SAE was trained on.")
    try:
        engine.vector(key.layer, key.index)
    except Exception as err:  # a missing SAE or an index outside it: said without server paths
        from steering.service.errors import scrub_paths

        raise UserError(f"{where}: {key} cannot be steered here ({scrub_paths(str(err))}). "
                        "Use a feature of this server's SAE.") from None
