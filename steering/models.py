"""Model plumbing: resolve a model name, load it frozen on a device, find its layers, render chats.

Chats are rendered to text once and tokenized once, so BOS and control tokens come only from the
chat template and are never duplicated by the tokenizer.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from steering.default_model import EMBEDDED_MODEL, ensure_default_model, is_embedded

DECODER_LAYER_PATHS = (
    "model.layers",  # Llama, Qwen, Gemma, Mistral, Phi-3, OLMo
    "model.language_model.layers",  # multimodal wrappers (Gemma 3, Llava)
    "language_model.model.layers",
    "model.decoder.layers",  # OPT
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "transformer.blocks",  # MPT
    "gpt_neox.layers",  # Pythia, GPT-NeoX
    "layers",  # bare decoders (LlamaModel)
    "h",  # bare GPT2Model
)
"""Attribute paths tried in order; the first that is a non-empty ModuleList wins."""

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
_DEVICE_HINT = "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
_ROLES = ("system", "user", "assistant")


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


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks in order, wherever this architecture keeps them."""
    for path in DECODER_LAYER_PATHS:
        found = _get_path(model, path)
        if isinstance(found, torch.nn.ModuleList) and len(found) > 0:
            return found
    raise ValueError(
        f"Cannot find the decoder layers of {type(model).__name__}: tried {', '.join(DECODER_LAYER_PATHS)}. "
        f"Add this architecture's path to steering.models.DECODER_LAYER_PATHS."
    )


def _get_path(root: object, path: str) -> object | None:
    obj = root
    for attr in path.split("."):
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


def num_layers(model: torch.nn.Module) -> int:
    return len(decoder_layers(model))


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict],
    system_prompt: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Chat as prompt text.

    ``system_prompt=None`` keeps the template's default system turn; any string, even ``""``, replaces
    it. Templates that reject a system role get it folded into the first user turn. Tokenizers without
    a chat template get a plain ``User: ...\\nAssistant:`` transcript.
    """
    turns = _with_system(_checked(messages), system_prompt)
    if not getattr(tokenizer, "chat_template", None):
        return _plain_transcript(turns, add_generation_prompt)
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError:
        if turns[0]["role"] != "system":
            raise
        folded = _fold_system(turns)
        return tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=add_generation_prompt)


def _checked(messages: list[dict]) -> list[dict]:
    out = []
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise ValueError(
                f"messages[{i}] must be {{'role': 'user'|'assistant', 'content': str}}, got {msg!r}."
            )
        if role == "system" and i > 0:
            raise ValueError(f"messages[{i}]: a system message may only come first.")
        out.append({"role": role, "content": content})
    return out


def _with_system(turns: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt is None:
        return turns
    if turns and turns[0]["role"] == "system":
        raise ValueError("Give the system prompt either as system_prompt or as a first system message, not both.")
    return [{"role": "system", "content": system_prompt}, *turns]


def _fold_system(turns: list[dict]) -> list[dict]:
    system, rest = turns[0]["content"], turns[1:]
    if rest and rest[0]["role"] == "user" and system:
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return rest


def _plain_transcript(turns: list[dict], add_generation_prompt: bool) -> str:
    kept = [turn for turn in turns if turn["role"] != "system" or turn["content"]]
    lines = [f"{turn['role'].capitalize()}: {turn['content']}" for turn in kept]
    if add_generation_prompt:
        lines.append("Assistant:")
    return "\n".join(lines)


def encode_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict],
    system_prompt: str | None = None,
    device: torch.device | str | None = None,
) -> torch.LongTensor:
    """Token ids of the rendered chat, shape (1, T).

    With a chat template the text already holds BOS and control tokens, so the tokenizer adds none.
    The plain fallback has no BOS in its text, so there the tokenizer adds its usual specials.
    """
    text = render_chat(tokenizer, messages, system_prompt)
    add_specials = not getattr(tokenizer, "chat_template", None)
    ids = tokenizer(text, add_special_tokens=add_specials, return_tensors="pt")["input_ids"]  # (1, T)
    return ids.to(device) if device is not None else ids


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids never worth showing or steering on: declared specials plus added tokens flagged special."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
    return ids
