"""dictionary_learning (ae.pt + config.json): the class named by config `trainer.dict_class`, read as the
library's own `utils.load_dictionary` reads it (dictionary_learning 0.1.0; x is the input, pre the encoder output):

| dict_class | tensors (stored orientation) | encode | rule |
|---|---|---|---|
| BatchTopKSAE (default) | `encoder.weight` (F, d), `encoder.bias`, `decoder.weight` (d, F), `b_dec`, scalar `threshold`, `k` | `relu(pre)` kept where `> threshold`, `pre = (x - b_dec) @ encoder.weight.T + encoder.bias` | jumprelu, the global threshold expanded |
| MatryoshkaBatchTopKSAE | `W_enc` (d, F), `b_enc`, `W_dec` (F, d), `b_dec`, scalar `threshold`, `k`, `group_sizes` | as BatchTopKSAE, `pre = (x - b_dec) @ W_enc + b_enc` | jumprelu |
| AutoEncoderTopK | as BatchTopKSAE | top-k of `relu(pre)` (its `threshold` buffer is unused by default) | topk |
| JumpReluAutoEncoder | `W_enc` (d, F), `b_enc`, `W_dec` (F, d), `b_dec`, `threshold` (F) | `relu(pre * (pre > threshold))`, `pre = x @ W_enc + b_enc`: no b_dec on the input (`apply_b_dec_to_input` is not saved; False) | jumprelu |
| AutoEncoder | `encoder.weight` (F, d), `encoder.bias`, `decoder.weight` (d, F), `bias` | `relu((x - bias) @ encoder.weight.T + encoder.bias)`; `from_pretrained` normalises the decoder columns and scales the encoder to match | relu, decoder norms folded |

Decode is `f @ W_dec + b_dec` (canonical names) for all. The trainers save the state dict as is, so
`encoder.weight` is often a transposed view (non-contiguous storage); the lazy reader follows its strides.
`k` is read from `config.json`, and must match the `k` buffer. Other classes (GatedAutoEncoder, AutoEncoderNew)
are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, pick, read_json, require_keys
from steering.sae.names import SAEFormatError
from steering.sae.storage import torch_header

_LINEAR = {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "decoder.weight", "b_dec": "b_dec"}
_PARAMETERS = {"W_enc": "W_enc", "b_enc": "b_enc", "W_dec": "W_dec", "b_dec": "b_dec"}


@dataclass(frozen=True)
class _Class:
    """How one dict_class is stored and encodes."""

    names: dict[str, str]  # canonical -> stored name
    activation: str
    transposed: frozenset[str] = frozenset()
    apply_b_dec_to_input: bool = True
    needs_k: bool = False
    scalar_threshold: bool = False
    fold_decoder_norms: bool = False


_CLASSES = {
    "BatchTopKSAE": _Class(_LINEAR | {"threshold": "threshold"}, "jumprelu", frozenset({"W_enc", "W_dec"}),
                           needs_k=True, scalar_threshold=True),
    "MatryoshkaBatchTopKSAE": _Class(_PARAMETERS | {"threshold": "threshold"}, "jumprelu", needs_k=True,
                                     scalar_threshold=True),
    "AutoEncoderTopK": _Class(_LINEAR, "topk", frozenset({"W_enc", "W_dec"}), needs_k=True),
    "JumpReluAutoEncoder": _Class(_PARAMETERS | {"threshold": "threshold"}, "jumprelu", apply_b_dec_to_input=False),
    "AutoEncoder": _Class(_LINEAR | {"b_dec": "bias"}, "relu", frozenset({"W_enc", "W_dec"}),
                          fold_decoder_norms=True),
}  # fmt: skip


def _k(spec: _Class, trainer: dict, records: dict, weights: Path, cfg_path: Path) -> int | None:
    """trainer.k for classes that keep k (checked against the `k` buffer), else None."""
    if not spec.needs_k:
        return None
    k = int(trainer["k"])
    if "k" in records and records["k"].shape == () and int(records["k"].read_all_small()) != k:
        raise SAEFormatError(
            f"{weights}: buffer k={int(records['k'].read_all_small())} disagrees with {cfg_path} trainer.k={k}"
        )
    return k


def convert(weights: Path) -> Layout:
    """The `Layout` of an `ae.pt`, sized and ruled by the `config.json` beside it."""
    cfg_path = weights.parent / "config.json"
    cfg = read_json(cfg_path)
    if "trainer" not in cfg:
        raise SAEFormatError(f"{cfg_path}: missing the 'trainer' section; found keys {sorted(cfg)}")
    trainer = cfg["trainer"]
    dict_class = trainer.get("dict_class", "BatchTopKSAE")
    if dict_class not in _CLASSES:
        raise SAEFormatError(
            f"{cfg_path}: dictionary_learning dict_class {dict_class!r} is not supported; supported: {sorted(_CLASSES)}"
        )
    spec = _CLASSES[dict_class]
    require_keys(trainer, ["activation_dim", "dict_size"] + (["k"] if spec.needs_k else []), f"{cfg_path} ['trainer']")
    records = torch_header(weights)
    tensors = {c: pick(records, n, c, weights) for c, n in spec.names.items()}
    k = _k(spec, trainer, records, weights, cfg_path)
    layer = trainer.get("layer")
    layer = None if layer is None else int(layer)
    meta = {
        "layer": layer,
        "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post",
        "model_name": trainer.get("lm_name"),
        "k": k,  # for the BatchTopK classes the training k; their inference uses the threshold
        "dict_class": dict_class,
    }
    return Layout(
        d_in=int(trainer["activation_dim"]),
        d_sae=int(trainer["dict_size"]),
        activation=spec.activation,
        tensors=tensors,
        transposed=spec.transposed,
        k=k if spec.activation == "topk" else None,
        apply_b_dec_to_input=spec.apply_b_dec_to_input,
        layer=layer,
        cfg=cfg,
        meta=meta,
        scalar_ok=frozenset({"threshold"}) if spec.scalar_threshold else frozenset(),
        fold_decoder_norms=spec.fold_decoder_norms,
    )


FORMAT = SAEFormat(weights=("ae.pt",), config="config.json", open=convert)
