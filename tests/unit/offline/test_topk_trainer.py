"""steering/offline/topk_trainer.py: the sparse forward against a dense reference, the hand-written backward against autograd."""

import torch

from steering.offline.topk_trainer import TopKTrainer


def test_sparse_path_matches_dense_reference():
    torch.manual_seed(0)
    m = TopKTrainer(16, 64, k=4, seed=1)
    with torch.no_grad():
        m.b_enc.normal_()
        m.b_dec.normal_()
    x = torch.randn(10, 16)
    x_hat, idx, acts = m(x)
    pre = (x - m.b_dec) @ m.enc.T + m.b_enc
    v, i = pre.topk(4, dim=-1)
    dense = torch.zeros_like(pre).scatter(-1, i, v.relu())
    torch.testing.assert_close(x_hat, dense @ m.W_dec + m.b_dec, atol=1e-5, rtol=1e-5)
    # the saved SAE (input scale folded in) computes the same on raw inputs
    sae = m.to_sae(scale=3.0, meta={})
    torch.testing.assert_close(sae.decode(sae.encode(3.0 * x)), 3.0 * x_hat.detach(), atol=1e-4, rtol=1e-4)


def test_selected_preacts_gradients_match_autograd_through_a_gather():
    """The hand-written backward equals autograd through an explicit gather of the selected encoder rows."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = TopKTrainer(12, 48, k=5, seed=2).double()
    with torch.no_grad():
        m.b_enc.normal_()
        m.b_dec.normal_()
    x = torch.randn(9, 12, dtype=torch.float64)
    target = torch.randn(9, 12, dtype=torch.float64)
    mask = torch.rand(48) > 0.3

    def reference(m):
        xc = x - m.b_dec
        with torch.no_grad():
            pre = (xc @ m.enc.T + m.b_enc).masked_fill(~mask, float("-inf"))
            idx = pre.topk(5, dim=-1).indices
        values = torch.relu(torch.einsum("bkd,bd->bk", F.embedding(idx, m.enc), xc) + m.b_enc[idx])
        return idx, values

    grads = []
    for select in (lambda: m.select(x, 5, mask=mask.unsqueeze(0)), lambda: reference(m)):
        m.zero_grad()
        idx, values = select()
        ((m.decode_sparse(idx, values) + m.b_dec - target).pow(2).sum() + values.pow(3).sum()).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-10)
    assert grads[0]["enc"].abs().sum() > 0 and grads[0]["b_dec"].abs().sum() > 0
