"""`Backend`: where the weights live, and how a batch of requests is generated and steered there.

The `Engine` composes one backend (picked by name from `registry`) with the config, the SAEs and the
steering vectors. Everything above it (chat, inspection, the service, the front-ends) reaches the weights
only through these methods, so a backend is swapped without touching them. A backend owns what it
attached or started (hooks, patches, an engine process, HTTP clients); `close()` releases all of it.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Sequence

import torch
from torch import Tensor

from steering.config import DemoConfig
from steering.generate.decode import Request
from steering.model.chat_template import PLAIN_TURN_STOP, special_token_ids
from steering.steer.plan import SteeringPlan


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


class Backend(ABC):
    """What the `Engine` needs of the weights: generate a batch, read residuals, output scores, close.

    Subclasses set `tokenizer`, `model_config` (the transformers config: `hidden_size`,
    `num_hidden_layers`, `vocab_size`, ...), `generation_config`, `device` (where request token ids
    are placed) and `decoder` (what runs batches: `generate.decode.Decoder` for a transformers model
    in this process, or a decoder of its own with the same `run` and `active`) when they are built.
    """

    name: ClassVar[str] = ""
    """Its name in the registry: `backend:` in demo.yaml."""
    model = None
    """The transformers model, where this backend holds one in this process (offline tools read it)."""

    tokenizer: object
    model_config: object
    generation_config: object
    device: torch.device
    decoder: object
    log: Callable[[str], None]

    @classmethod
    @abstractmethod
    def load(cls, config: DemoConfig, log: Callable[[str], None] = log_to_stderr) -> "Backend":
        """Load the weights, start the serving engine or connect to the servers, as `config` says."""

    @classmethod
    def on_model(cls, model, tokenizer, log: Callable[[str], None] = log_to_stderr) -> "Backend":
        """This backend on a transformers model already loaded in this process (tests, notebooks)."""
        raise ValueError(f"backend: {cls.name} holds no model in this process; build it with Engine.from_config "
                         "(or use backend: hooks to steer a model you loaded)")

    # ---- what the backend is -----------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Decoder layers of the model: steering and inspection layers are 0..n_layers - 1."""
        return int(self.model_config.num_hidden_layers)

    @property
    def special_ids(self) -> list[int]:
        """The tokenizer's special tokens, which `steer_special_tokens: false` leaves unsteered."""
        return special_token_ids(self.tokenizer)

    @property
    def eos_ids(self) -> list[int]:
        """Tokens that end an answer: the tokenizer's end of sequence and the generation config's."""
        ids = {self.tokenizer.eos_token_id}
        gen_eos = self.generation_config.eos_token_id
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    @property
    def stop_text(self) -> str | None:
        """Text that ends an answer: a plain (template-less) model's next-turn marker."""
        return None if getattr(self.tokenizer, "chat_template", None) else PLAIN_TURN_STOP

    def batch(self, max_batch: int) -> bool:
        """Get ready to take batches of up to `max_batch` rows formed by the Engine's batch window; False when
        this backend batches requests by itself or steers a batch with one plan (then it gets one group at a
        time)."""
        return False

    # ---- the work ----------------------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Requests generating right now (a batch counts its rows)."""
        return self.decoder.active

    def generate(self, rows: Sequence[Request]) -> None:
        """Generate every row on the calling thread, each steered by its own plan, streaming each one's text
        to its events queue (`Request.text`); every row ends (`Request.finish`) whatever happens, and an
        error reaches each row it touched (`Request.error`)."""
        self.decoder.run(rows)

    @abstractmethod
    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int,
                       plan: SteeringPlan | None = None) -> list[Tensor]:
        """The residual stream after decoder layer `layer` at every position of each token-id prompt,
        (T_i, d) float32 on the CPU, steered by `plan` (None: the plain model)."""

    @abstractmethod
    def output_scores(self, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                      tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(score, base), each (F,): the output score of each unit direction (F, d) added at `layer` with
        `strength` at each prompt's last position, and unsteered, over `tokens` (k,), averaged over the
        prompts (the formula: `steering.backends.reads`)."""

    def close(self) -> None:
        """Release everything this backend attached or started (nothing may be running then)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is outside this model (0..{self.n_layers - 1})")
