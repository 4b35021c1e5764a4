"""The TopK SAE being trained (Gao et al. 2024): `f = topk(relu((x - b_dec) W_enc + b_enc))`, `x_hat = f W_dec + b_dec`,
with unit-norm decoder rows and a hand-written backward for the selected pre-activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from steering.sae import SAE


class SelectedPreacts(torch.autograd.Function):
    """`enc[idx] . xc + b_enc[idx]` for the selected (B, k) features, with values already computed.

    Written by hand because autograd through a gather would build (B, k, d) tensors twice (forward rows and
    their gradient), which cost more than the dense encoder product itself; here the backward is one
    `embedding_bag` and its weight gradient, with nothing of size (B, k, d) made.
    """

    @staticmethod
    def forward(ctx, xc: Tensor, enc: Tensor, b_enc: Tensor, idx: Tensor, values: Tensor) -> Tensor:
        ctx.save_for_backward(xc, enc, idx)
        ctx.n_features = b_enc.shape[0]
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, enc, idx = ctx.saved_tensors
        with torch.enable_grad():
            weight = enc.detach().requires_grad_()
            grad_xc = F.embedding_bag(idx, weight, per_sample_weights=grad, mode="sum")  # sum_k g_bk enc[idx_bk]
            (grad_enc,) = torch.autograd.grad(grad_xc, weight, grad_outputs=xc)  # row j: sum g_bk xc_b, idx_bk = j
        grad_b_enc = torch.zeros(ctx.n_features, dtype=grad.dtype).index_add_(0, idx.flatten(), grad.flatten())
        return grad_xc.detach(), grad_enc, grad_b_enc, None, None


class TopKTrainer(nn.Module):
    """Training-time TopK SAE. `enc` is stored (d_sae, d_in) so the k selected rows gather contiguously."""

    def __init__(self, d_in: int, d_sae: int, k: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dec = torch.randn(d_sae, d_in, generator=g)
        dec /= dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(dec)
        self.enc = nn.Parameter(dec.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.k = k

    def select(self, x: Tensor, k: int, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Indices (B, k) of the top-k pre-activations (no grad) and their values with grad (B, k)."""
        xc = x - self.b_dec
        with torch.no_grad():
            pre = xc @ self.enc.T + self.b_enc  # (B, F): the one dense product
            if mask is not None:
                pre = pre.masked_fill(~mask, float("-inf"))
            top = pre.topk(k, dim=-1)  # (B, k)
        return top.indices, torch.relu(SelectedPreacts.apply(xc, self.enc, self.b_enc, top.indices, top.values))

    def decode_sparse(self, idx: Tensor, acts: Tensor) -> Tensor:
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=acts, mode="sum")  # (B, d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        idx, acts = self.select(x, self.k)
        return self.decode_sparse(idx, acts) + self.b_dec, idx, acts

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec

    def to_sae(self, scale: float, meta: dict) -> SAE:
        """The inference SAE for raw (unscaled) inputs: the input scale is folded into the biases."""
        return SAE(W_enc=self.enc.detach().T.contiguous().clone(), W_dec=self.W_dec.detach().clone(),
                   b_enc=self.b_enc.detach() * scale, b_dec=self.b_dec.detach() * scale, activation="topk",
                   k=self.k, apply_b_dec_to_input=True, meta=meta)
