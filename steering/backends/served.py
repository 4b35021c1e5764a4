"""What every backend whose weights live elsewhere (vLLM's worker, a remote server) has in this process: the
tokenizer, the HF config and generation config (read from the model folder; no weights loaded), and the plan
as plain data for where the weights are; each has a decoder of its own that batches by itself."""

from __future__ import annotations

from collections.abc import Callable

import torch

from steering.backends.base import Backend, log_to_stderr
from steering.backends.payload import to_payload


class ServedBackend(Backend):
    """A backend without a model in this process; subclasses set `decoder`."""

    def __init__(self, path: str, sae_source: Callable[[int], dict] | None = None,
                 log: Callable[[str], None] = log_to_stderr):
        from transformers import AutoConfig, GenerationConfig

        self.path, self.sae_source, self.log = path, sae_source, log
        self.tokenizer = tokenizer_for(path)
        self.model_config = AutoConfig.from_pretrained(path)
        try:
            self.generation_config = GenerationConfig.from_pretrained(path)
        except OSError:
            self.generation_config = GenerationConfig.from_model_config(self.model_config)
        self.device = torch.device("cpu")  # prompts are built here; the serving engine places them itself

    def payload(self, plan) -> dict | None:
        """`plan` as plain data for the serving engine; None for no steering."""
        return None if plan is None or plan.is_empty else to_payload(plan, self.sae_source)


def tokenizer_for(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
