"""What the `Engine` reads of a model whose weights live elsewhere (vLLM's worker, a remote server): the HF
config and generation config (from the model folder; no weights loaded), its device, and the two reads the
inspector needs, `read_residuals` and `paper_scores`, which the subclasses answer from where the weights are."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class ServedModel:
    """A stand-in for the transformers model inside an `Engine`."""

    def __init__(self, path: str, sae_source: Callable[[int], dict] | None = None):
        from transformers import AutoConfig, GenerationConfig

        self.path, self.sae_source = path, sae_source
        self.config = AutoConfig.from_pretrained(path)
        try:
            self.generation_config = GenerationConfig.from_pretrained(path)
        except OSError:
            self.generation_config = GenerationConfig.from_model_config(self.config)
        self.device = torch.device("cpu")  # prompts are built here; the engine places them itself
        self.special_ids: list[int] = []  # set by the Engine: steered reads skip them as generation does
        self._local = threading.local()

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @contextlib.contextmanager
    def steering(self, plan):
        """Residuals read inside this block (on this thread) are read under `plan`, as the hooks backend's."""
        before = getattr(self._local, "plan", None)
        self._local.plan = plan
        try:
            yield
        finally:
            self._local.plan = before

    @property
    def plan(self):
        return getattr(self._local, "plan", None)

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer {layer} is outside this model (0..{self.num_layers - 1})")

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int) -> list[Tensor]:
        raise NotImplementedError

    def paper_scores(self, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                     tokens: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def tokenizer_for(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
