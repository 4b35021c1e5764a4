"""The one canonical sparse autoencoder type and its math.

Every on-disk format is converted to this layout (SAELens names and orientation) by
`steering.sae.registry`; nothing here knows a foreign weight name.

Activation rules (x is a residual vector, pre = (x - b_dec [if apply_b_dec_to_input]) @ W_enc + b_enc):
- "relu":     f = relu(pre)
- "jumprelu": f = relu(pre) * (pre > threshold), threshold per feature. dictionary_learning BatchTopK at
              inference (`f = relu(pre)`, keep `f > threshold`, one global threshold) is exactly this rule
              with the global threshold expanded to (d_sae,).
- "topk":     keep the k largest entries of pre, relu on the kept values, zero elsewhere (SAELens, sparsify).
- "topk_raw": keep the k largest entries of pre as they are (no relu: a kept value may be negative), zero
              elsewhere (Qwen-Scope). Not a SAELens architecture: `save` writes `architecture: "topk_raw"`, which
              only this library reads back.
- "groupmax": the d_sae features split into k equal groups of consecutive features (group g holds features
              g*d_sae/k .. (g+1)*d_sae/k - 1); each group keeps relu of its largest pre, zero elsewhere (sparsify
              `activation: groupmax`). Also this library's own architecture name in `save`.

Formats whose encoder scales each feature by its decoder row's norm (SAELens `rescale_acts_by_decoder_norm`) are
read with those norms folded into the weights (`fold_decoder_norms`), so every rule above applies unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file
from torch import Tensor

ACTIVATIONS = ("relu", "topk", "topk_raw", "jumprelu", "groupmax")
PER_FEATURE_RULES = ("relu", "jumprelu")
SELECTION_RULES = ("topk", "topk_raw", "groupmax")  # a feature's value depends on the others; all need k
NORM_FLOOR = 1e-8  # decoder norms are clamped here before dividing (as SAELens's own fold does)

# SAELens `architecture` value for each activation rule ("topk_raw" and "groupmax" are this library's own).
_ARCHITECTURE = {"relu": "standard", "topk": "topk", "topk_raw": "topk_raw", "jumprelu": "jumprelu",
                 "groupmax": "groupmax"}  # fmt: skip


def _apply_rule(pre: Tensor, activation: str, threshold: Tensor | None) -> Tensor:
    """Per-feature rules, shared by `SAE.encode` and `FeatureRule.activation` so both agree bit for bit."""
    if activation == "relu":
        return torch.relu(pre)
    if activation == "jumprelu":
        return torch.relu(pre) * (pre > threshold)
    raise ValueError(f"activation {activation!r} is not a per-feature rule; per-feature rules: {PER_FEATURE_RULES}")


def _groupmax(pre: Tensor, groups: int) -> Tensor:
    """(..., F) -> (..., F): in each of `groups` runs of F/groups consecutive entries, relu of the largest is kept."""
    blocks = pre.unflatten(-1, (groups, -1))  # (..., groups, F/groups)
    values, top = blocks.max(dim=-1, keepdim=True)
    return torch.zeros_like(blocks).scatter(-1, top, torch.relu(values)).flatten(-2)


def decoder_norms(W_dec: Tensor) -> Tensor:
    """(n, d_in) decoder rows -> (n,) their norms in float32, floored at NORM_FLOOR (as SAELens's own fold)."""
    return W_dec.float().norm(dim=-1).clamp(min=NORM_FLOOR)


def fold_decoder_norms(W_enc: Tensor, b_enc: Tensor, W_dec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(W_enc (d_in, F), b_enc (F,), W_dec (F, d_in)) with each decoder norm n_i = |W_dec[i]| folded in, float32:
    (W_enc[:, i] * n_i, b_enc[i] * n_i, W_dec[i] / n_i).

    An SAE that encodes `topk(pre_i * n_i)` and decodes `sum_i f_i / n_i * W_dec[i]` (SAELens
    `rescale_acts_by_decoder_norm`) is this plain SAE: the same codes and reconstructions, unit decoder rows.
    """
    norms = decoder_norms(W_dec)  # (F,)
    return W_enc.float() * norms, b_enc.float() * norms, W_dec.float() / norms.unsqueeze(-1)


def _as_index(indices: int | Sequence[int] | Tensor) -> Tensor:
    return torch.as_tensor(indices, dtype=torch.long).reshape(-1)


@dataclass
class FeatureRule:
    """One feature's encoder, enough to read its activation without loading the whole SAE (pin mode).

    Only per-feature rules ("relu", "jumprelu") reduce to one encoder row; TopK depends on every feature.
    """

    index: int
    w_enc: Tensor  # (d_in,)
    b_enc: Tensor  # ()
    b_dec: Tensor  # (d_in,)
    threshold: Tensor | None  # () for "jumprelu", else None
    rule: str
    apply_b_dec_to_input: bool = True

    def __post_init__(self) -> None:
        if self.rule not in PER_FEATURE_RULES:
            raise ValueError(
                f"feature {self.index}: a {self.rule!r} SAE cannot be reduced to one encoder row (its activation "
                f"depends on all features); encode with the full SAE instead"
            )
        if self.rule == "jumprelu" and self.threshold is None:
            raise ValueError(f"feature {self.index}: rule 'jumprelu' needs a threshold")

    def activation(self, x: Tensor) -> Tensor:
        """(..., d_in) -> (...,): this feature's activation by the SAE's own rule, in float32."""
        x = x.float()
        w = self.w_enc.to(x.device, torch.float32)  # (d_in,)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec.to(x.device, torch.float32)
        pre = x @ w + self.b_enc.to(x.device, torch.float32)  # (...,)
        threshold = None if self.threshold is None else self.threshold.to(x.device, torch.float32)
        return _apply_rule(pre, self.rule, threshold)


class TopKFeature:
    """One feature's activation under a selection rule (topk, topk_raw, groupmax), which depends on other
    features' pre-activations: all of them for top-k, its own group for groupmax.

    Pin mode reads it at every decoding step. `from_pre` takes pre-activations already computed,
    so several pinned features of one SAE share one encoder product (see `hooks`), and `shift`
    gives how an edit along `d` moves them (pre-activation is affine in the residual).
    """

    def __init__(self, sae: "SAE", index: int):
        if sae.activation not in SELECTION_RULES:
            raise ValueError(f"TopKFeature needs a {'/'.join(SELECTION_RULES)} SAE, got rule {sae.activation!r}")
        self.sae, self.index = sae, int(index)

    def from_pre(self, pre: Tensor) -> Tensor:
        """(..., d_sae) pre-activations -> (...,) this feature's activation; equals `SAE.encode` without ties.

        Kept when fewer than `limit` rivals are larger: rivals are all features and limit k for top-k, the
        feature's own group and limit 1 for groupmax.
        """
        value = pre[..., self.index]
        rivals, limit = pre, self.sae.k
        if self.sae.activation == "groupmax":
            size = self.sae.d_sae // self.sae.k
            start = self.index // size * size
            rivals, limit = pre[..., start : start + size], 1
        kept = (rivals > value.unsqueeze(-1)).sum(-1) < limit
        if self.sae.activation != "topk_raw":
            value = torch.relu(value)
        return torch.where(kept, value, torch.zeros_like(value))

    def pre(self, x: Tensor) -> Tensor:
        """Every feature's pre-activation on `x` (..., d_in), computed where the SAE lives, on x's device."""
        return self.sae.pre_activation(x.to(self.sae.W_enc.device)).to(x.device)

    def __call__(self, x: Tensor) -> Tensor:
        return self.from_pre(self.pre(x))

    def shift(self, d: Tensor) -> Tensor:
        """(d_sae,) change of every pre-activation per unit of `d` (d_in,) added to the residual."""
        return (d.float().to(self.sae.W_enc.device) @ self.sae.W_enc.float()).to(d.device)


@dataclass
class SAE:
    """Canonical SAE: W_enc (d_in, d_sae), W_dec (d_sae, d_in), biases, and the activation rule."""

    W_enc: Tensor  # (d_in, d_sae)
    W_dec: Tensor  # (d_sae, d_in)
    b_enc: Tensor  # (d_sae,)
    b_dec: Tensor  # (d_in,)
    activation: str
    threshold: Tensor | None = None  # (d_sae,) for "jumprelu"
    k: int | None = None  # for "topk" and "topk_raw"
    apply_b_dec_to_input: bool = True
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Refuse inconsistent SAEs here so the math below never has to guess."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        d_in, d_sae = self.W_enc.shape
        expected = {"W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
        if self.activation == "jumprelu":
            if self.threshold is None:
                raise ValueError("activation 'jumprelu' needs a threshold of shape (d_sae,)")
            expected["threshold"] = (d_sae,)
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"{name} has shape {got}, expected {shape} (W_enc is (d_in={d_in}, d_sae={d_sae}))")
        if self.activation in SELECTION_RULES and not (isinstance(self.k, int) and 0 < self.k <= d_sae):
            raise ValueError(f"activation {self.activation!r} needs an integer k in [1, {d_sae}], got {self.k!r}")
        if self.activation == "groupmax" and d_sae % self.k:
            raise ValueError(f"activation 'groupmax' needs k dividing d_sae into equal groups; k={self.k}, d_sae={d_sae}")

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def pre_activation(self, x: Tensor) -> Tensor:
        """(..., d_in) -> (..., d_sae), in float32 (load the SAE in float32 to avoid an upcast per call)."""
        x = x.float()
        if self.apply_b_dec_to_input:
            x = x - self.b_dec.float()
        return x @ self.W_enc.float() + self.b_enc.float()  # (..., d_sae)

    def encode(self, x: Tensor) -> Tensor:
        """(..., d_in) -> (..., d_sae) feature activations by this SAE's rule, in float32."""
        pre = self.pre_activation(x)  # (..., d_sae)
        if self.activation == "groupmax":
            return _groupmax(pre, self.k)
        if self.activation in SELECTION_RULES:
            values, top = pre.topk(self.k, dim=-1)  # (..., k)
            if self.activation == "topk":
                values = torch.relu(values)
            return torch.zeros_like(pre).scatter(-1, top, values)
        threshold = None if self.threshold is None else self.threshold.float()
        return _apply_rule(pre, self.activation, threshold)

    def decode(self, f: Tensor) -> Tensor:
        """(..., d_sae) -> (..., d_in): f @ W_dec + b_dec."""
        return f.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def decoder_directions(self, indices: int | Sequence[int] | Tensor) -> Tensor:
        """(n, d_in) raw decoder rows, not normalised (steering normalises; pin needs them raw)."""
        return self.W_dec[_as_index(indices).to(self.W_dec.device)]

    def feature_rule(self, index: int) -> FeatureRule:
        """One feature's encoder as a `FeatureRule`; ValueError for TopK, which has no per-feature rule."""
        return FeatureRule(
            index=int(index),
            w_enc=self.W_enc[:, index],
            b_enc=self.b_enc[index],
            b_dec=self.b_dec,
            threshold=None if self.threshold is None else self.threshold[index],
            rule=self.activation,
            apply_b_dec_to_input=self.apply_b_dec_to_input,
        )

    def encode_feature(self, x: Tensor, index: int) -> Tensor:
        """(..., d_in) -> (...,) activation of feature `index`.

        Cheap and exact for per-feature rules (one encoder column). For TopK rules a feature's value depends
        on all the others, so this runs the full `encode` and picks the column.
        """
        if self.activation not in PER_FEATURE_RULES:
            return self.encode(x)[..., index]
        return self.feature_rule(index).activation(x)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "SAE":
        """A copy on `device` with floating tensors cast to `dtype` (None keeps each)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(
            self,
            W_enc=move(self.W_enc),
            W_dec=move(self.W_dec),
            b_enc=move(self.b_enc),
            b_dec=move(self.b_dec),
            threshold=move(self.threshold),
            meta=dict(self.meta),
        )

    def cfg(self) -> dict:
        """SAELens-style cfg.json contents for this SAE."""
        cfg = {
            "architecture": _ARCHITECTURE[self.activation],
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "hook_name": self.meta.get("hook_name"),
            "hook_layer": self.meta.get("layer"),
            "model_name": self.meta.get("model_name"),
        }
        if self.activation in SELECTION_RULES:
            cfg["k"] = self.k
            cfg["activation_fn_kwargs"] = {"k": self.k}
        cfg["metadata"] = {k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool, type(None)))}
        return cfg

    def save(self, folder: Path | str, dtype: torch.dtype = torch.float16) -> None:
        """Write SAELens-native `cfg.json` + `sae_weights.safetensors` (readable by `load_sae`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if self.threshold is not None else [])
        tensors = {name: getattr(self, name).detach().to("cpu", dtype).contiguous() for name in names}
        cfg = self.cfg()
        cfg["dtype"] = str(dtype).removeprefix("torch.")
        save_file(tensors, str(folder / "sae_weights.safetensors"))
        (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
