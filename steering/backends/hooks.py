"""`backend: hooks` (the default): a transformers model in this process, steered by one permanent hook per
decoder layer (`steer.hooks`), each row of a batch by its own plan.

It owns the hooks it attached and, while batching on a CPU, the small-batch linear route
(`generate.small_batch`); `close()` undoes both and leaves the model as it found it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from torch import Tensor

from steering.backends import reads
from steering.backends.base import Backend, log_to_stderr
from steering.config import DemoConfig
from steering.generate.decode import Decoder, Request, Runner
from steering.generate.small_batch import speed_up_small_batches, undo_small_batches
from steering.model.layers import num_layers
from steering.model.loading import load_model
from steering.steer.hooks import attach, detach
from steering.steer.plan import SteeringPlan


class HooksRunner:
    """Steers each row of a batch by its own plan through the model's `SteeringHooks`."""

    per_row = True

    def __init__(self, model, hooks, special_ids: Iterable[int]):
        self.model, self.hooks, self.special_ids = model, hooks, list(special_ids)

    def generate(self, rows: Sequence[Request], offsets: Sequence[int], **kwargs) -> None:
        with self.hooks.steering_rows([r.spec.plan for r in rows], [r.spec.input_ids for r in rows], offsets,
                                      self.special_ids):
            self.model.generate(**kwargs)


class HooksBackend(Backend):
    """A transformers model and tokenizer in this process (see the module docstring)."""

    name = "hooks"

    def __init__(self, model, tokenizer, log: Callable[[str], None] = log_to_stderr):
        self.model, self.tokenizer, self.log = model, tokenizer, log
        self.model_config, self.generation_config = model.config, model.generation_config
        runner = self._runner()  # may refuse (nnsight not installed) before anything is attached
        self.hooks = attach(model, owner=self)
        self.decoder = Decoder(model, tokenizer, runner or HooksRunner(model, self.hooks, self.special_ids),
                               self.eos_ids, stop_text=self.stop_text)
        self._patched = False

    def _runner(self) -> Runner | None:
        """The runner to steer batches with, made before the hooks are attached; None: `HooksRunner`."""
        return None

    @classmethod
    def load(cls, config: DemoConfig, log: Callable[[str], None] = log_to_stderr) -> "HooksBackend":
        model, tokenizer = load_model(config.model_source(), device=config.device, dtype=config.dtype)
        return cls(model, tokenizer, log)

    @classmethod
    def on_model(cls, model, tokenizer, log: Callable[[str], None] = log_to_stderr) -> "HooksBackend":
        return cls(model, tokenizer, log)

    @property
    def device(self):
        return self.model.device

    @property
    def n_layers(self) -> int:
        return num_layers(self.model)

    def batch(self, max_batch: int) -> bool:
        if max_batch > 1 and not self._patched:
            self._patched = speed_up_small_batches(self.model) > 0
        return True

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int,
                       plan: SteeringPlan | None = None) -> list[Tensor]:
        pad = self.tokenizer.pad_token_id
        with self.hooks.steering(plan):
            return reads.residuals(self.model, prompts, layer, pad if pad is not None else 0)

    def output_scores(self, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                      tokens: Tensor) -> tuple[Tensor, Tensor]:
        got = reads.output_scores(self.model, layer, units, prompts, strength, tokens=tokens)
        return got.score, got.base

    def close(self) -> None:
        if self._patched:
            undo_small_batches(self.model)
            self._patched = False
        detach(self.model, owner=self)
