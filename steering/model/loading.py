"""Load a model frozen on a device, from a Hub id, a folder or the embedded default."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from steering.model.embedded import EMBEDDED_MODEL, ensure_default_model, is_embedded

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


_DEVICE_HINT = "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_model_path(name: str) -> str:
    """The embedded default model becomes its converted cache folder; Hub ids and folders pass through."""
    return str(ensure_default_model()) if is_embedded(name) else name


def pick_device(device: str = "auto") -> torch.device:
    """Parse a device string and check the hardware exists, so a typo fails here and not mid-load."""
    spec = device.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"Unknown device {device!r}: {_DEVICE_HINT}.") from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"Device {device!r} asked for CUDA, but no CUDA GPU is available: use 'cpu' or 'auto'.")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"Device {device!r} does not exist: this machine has {count} CUDA GPU(s).")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"Device {device!r} asked for Apple MPS, which is not available: use 'cpu' or 'auto'.")
    elif dev.type != "cpu":
        raise ValueError(f"Unsupported device {device!r}: {_DEVICE_HINT}.")
    return dev


def pick_dtype(dtype: str = "auto", device: torch.device | str | None = None) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 elsewhere (bf16 is slower than fp32 on CPU)."""
    spec = dtype.strip().lower()
    if spec == "auto":
        dev = device if isinstance(device, torch.device) else pick_device("auto" if device is None else device)
        return torch.bfloat16 if dev.type == "cuda" else torch.float32
    if spec not in _DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'.")
    return _DTYPES[spec]


def load_model(
    name: str, device: str = "auto", dtype: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM frozen for inference (eval mode, no grads) and its tokenizer, with a pad token."""
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as err:
        raise OSError(
            f"Could not load model {name!r} ({path}): {err}\n"
            f"Give a local model folder, a Hub id reachable from here, or {EMBEDDED_MODEL!r}."
        ) from err
    model.to(dev)
    model.eval()
    model.requires_grad_(False)
    _ensure_pad_token(model, tokenizer)
    return model, tokenizer


def _ensure_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Batching and ``generate`` need a pad id; EOS is the conventional stand-in."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
