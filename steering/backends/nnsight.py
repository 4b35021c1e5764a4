"""The same steering written as nnsight interventions (the original project's research backend).

Optional: needs `pip install nnsight`; select it with `backend: nnsight` in demo.yaml. Sampling,
stops and streaming are the shared ones (`decode.Decoder`); only the steering differs: each
steered layer's output is edited inside an nnsight generation trace instead of by this library's
hooks. It steers every position of every row with one plan, so requests run one at a time
(`per_row = False`), and the position options (`steer_special_tokens: false`,
`steer_generated_only: true`) are refused with a message.
"""

from __future__ import annotations

import threading
import warnings
from typing import Sequence

from steering.generate.decode import Request
from steering.model.layers import DECODER_LAYER_PATHS, decoder_layers
from steering.steer.plan import SteeringPlan


def check_plan(plan: SteeringPlan | None) -> None:
    if plan is not None and (plan.generated_only or not plan.steer_special_tokens):
        raise ValueError(
            "the nnsight backend steers every position; steer_special_tokens: false and "
            "steer_generated_only: true need backend: hooks"
        )


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


class NNsightRunner:
    """Steers generation through an nnsight `LanguageModel` wrapped around the loaded model.

    nnsight cannot run two traces of one model from different threads at once, so requests on
    this backend take turns (one lock); the hooks backend has no such limit.
    """

    per_row = False

    def __init__(self, model, tokenizer):
        try:
            from nnsight import LanguageModel
        except ImportError as exc:
            raise RuntimeError("backend: nnsight needs the nnsight package: pip install nnsight (or use backend: hooks)") from exc
        self.model = model
        self.lm = LanguageModel(model, tokenizer=tokenizer)
        self.envoys = layer_envoys(self.lm, model)
        self._lock = threading.Lock()

    def generate(self, rows: Sequence[Request], offsets: Sequence[int], **kwargs) -> None:
        (row,) = rows
        check_plan(row.plan)
        plan = row.plan if row.plan is not None else SteeringPlan()
        input_ids = kwargs.pop("input_ids")
        steps = kwargs["generation_config"].max_new_tokens
        with self._lock, warnings.catch_warnings(), self.lm.generate(input_ids, **kwargs) as tracer:
            warnings.filterwarnings("ignore", message=".*was never reached.*")  # generation ended before max_new_tokens
            for _ in tracer.iter[:steps]:  # one iteration per forward pass; fewer if generation ends early
                for layer in plan.layers:
                    envoy = self.envoys[layer]
                    output = envoy.output
                    hidden = output[0] if isinstance(output, tuple) else output  # (B, T, d)
                    for edit in plan.edits[layer]:
                        hidden = edit.apply(hidden)
                    envoy.output = (hidden, *output[1:]) if isinstance(output, tuple) else hidden
