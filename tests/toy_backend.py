"""`backend: toy`, a backend added in one module and one registry line (the last line below), as
docs/architecture.md shows: SmolLM2 (any transformers model) in this process, one request at a time, steered
through the library's public `steering(model, plan)` block, its residuals read one prompt at a time.

The app suite runs on it with `STEERING_TEST_BACKEND=toy` (`tests.helpers.start_app` launches app.py through
this module, which registers the backend first): whatever the app, the service and the engine need of a
backend, this module is all of it.
"""

from __future__ import annotations

import runpy
from typing import Callable, Sequence

import torch
from torch import Tensor

from steering.backends import reads
from steering.backends.base import Backend, log_to_stderr
from steering.backends.registry import register
from steering.config import DemoConfig
from steering.generate.decode import Decoder, Request
from steering.model.loading import load_model
from steering.steer.hooks import StopForward, attach, capture_residual, detach, steering
from steering.steer.plan import SteeringPlan


class OneAtATime:
    """The decoder's runner: each request alone, steered by its plan for the whole `generate` call."""

    per_row = False

    def __init__(self, model, special_ids: list[int]):
        self.model, self.special_ids = model, special_ids

    def generate(self, rows: Sequence[Request], offsets: Sequence[int], **kwargs) -> None:
        (row,) = rows
        with steering(self.model, row.spec.plan, row.spec.input_ids, self.special_ids):
            self.model.generate(**kwargs)


class ToyBackend(Backend):
    name = "toy"

    def __init__(self, model, tokenizer, log: Callable[[str], None] = log_to_stderr):
        self.model, self.tokenizer, self.log = model, tokenizer, log
        self.model_config, self.generation_config, self.device = model.config, model.generation_config, model.device
        attach(model, owner=self)  # held until close, so `steering` blocks never install hooks mid-request
        self.decoder = Decoder(model, tokenizer, OneAtATime(model, self.special_ids), self.eos_ids, self.stop_text)

    @classmethod
    def load(cls, config: DemoConfig, log: Callable[[str], None] = log_to_stderr) -> "ToyBackend":
        return cls(*load_model(config.model_source(), device=config.device, dtype=config.dtype), log)

    @classmethod
    def on_model(cls, model, tokenizer, log: Callable[[str], None] = log_to_stderr) -> "ToyBackend":
        return cls(model, tokenizer, log)

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int,
                       plan: SteeringPlan | None = None) -> list[Tensor]:
        self.check_layer(layer)
        out = []
        with torch.inference_mode(), steering(self.model, plan):
            for ids in prompts:
                with capture_residual(self.model, layer, stop_early=True) as cap:
                    try:
                        self.model(input_ids=torch.tensor([list(ids)], device=self.device), use_cache=False)
                    except StopForward:
                        pass
                out.append(cap[layer][0].float().cpu())
        return out

    def output_scores(self, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                      tokens: Tensor) -> tuple[Tensor, Tensor]:
        got = reads.output_scores(self.model, layer, units, prompts, strength, tokens=tokens)
        return got.score, got.base

    def close(self) -> None:
        detach(self.model, owner=self)


register("toy", "tests.toy_backend:ToyBackend")

if __name__ == "__main__":  # python -m tests.toy_backend: app.py, with backend: toy known to the config
    from tests.helpers import ROOT

    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
