"""The same steering through nnsight's intervention API (the original project's research backend).

Optional: needs `pip install nnsight`. Select it with `backend: nnsight` in demo.yaml. It
edits each steered layer's output inside an nnsight generation trace instead of through this
library's hooks, and streams through the same `TextIteratorStreamer`. It steers every
position: the position options (`steer_special_tokens: false`, `steer_generated_only: true`)
are hooks-backend features and are refused here with a message. Requests take turns on
this backend (see `NNsightGeneration`).
"""

from __future__ import annotations

import threading
import warnings
import weakref

from torch import Tensor

from .generation import Generation
from .hooks import SteeringPlan
from .models import DECODER_LAYER_PATHS, decoder_layers

_wrapped: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_run_locks: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_wrap_lock = threading.Lock()


def nnsight_model(model, tokenizer):
    """The nnsight `LanguageModel` around an already loaded model, made once per model."""
    try:
        from nnsight import LanguageModel
    except ImportError as exc:
        raise RuntimeError("backend: nnsight needs the nnsight package: pip install nnsight (or use backend: hooks)") from exc
    with _wrap_lock:
        if model not in _wrapped:
            _wrapped[model] = LanguageModel(model, tokenizer=tokenizer)
            _run_locks[model] = threading.Lock()
        return _wrapped[model]


def layer_envoys(lm, model) -> list:
    """nnsight's proxies of the decoder layers, found by the same path as the hooks backend uses."""
    layers = decoder_layers(model)
    for path in DECODER_LAYER_PATHS:
        node, ok = model, True
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                ok = False
                break
        if ok and node is layers:
            envoy = lm
            for part in path.split("."):
                envoy = getattr(envoy, part)
            return list(envoy)
    raise RuntimeError("could not find the decoder layers through nnsight")


def check_plan(plan: SteeringPlan | None) -> None:
    if plan is not None and (plan.generated_only or not plan.steer_special_tokens):
        raise ValueError(
            "the nnsight backend steers every position; steer_special_tokens: false and "
            "steer_generated_only: true need backend: hooks"
        )


class NNsightGeneration(Generation):
    """A `Generation` whose steering is written as nnsight interventions.

    nnsight cannot run two traces of one model from different threads at once, so requests on
    this backend take turns (one lock per model); the hooks backend has no such limit.
    """

    def generate(self, kwargs: dict) -> Tensor | None:
        check_plan(self.plan)
        lm = nnsight_model(self.model, self.tokenizer)
        envoys = layer_envoys(lm, self.model)
        plan = self.plan if self.plan is not None else SteeringPlan()
        input_ids = kwargs.pop("input_ids")
        steps = self.settings.max_new_tokens
        with _run_locks[self.model], warnings.catch_warnings(), lm.generate(input_ids, **kwargs) as tracer:
            warnings.filterwarnings("ignore", message=".*was never reached.*")  # generation ended before max_new_tokens
            for _ in tracer.iter[:steps]:  # one iteration per forward pass; fewer if generation ends early
                for layer in plan.layers:
                    envoy = envoys[layer]
                    output = envoy.output
                    hidden = output[0] if isinstance(output, tuple) else output  # (B, T, d)
                    for edit in plan.edits[layer]:
                        hidden = edit.apply(hidden)
                    envoy.output = (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return None  # the tokens arrive through the streamer
