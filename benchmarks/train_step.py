"""One SAE training step: the hand-written backward of the selected pre-activations against autograd.

`python benchmarks/train_step.py` times `steering.offline.train`'s step (dense encoder product, TopK, sparse
decode, AuxK on 512 rows, Adam, decoder renormalisation) at the shipped size (16,384 x 576, k = 64, batch
2048) two ways, alternating in one process so both see the same machine:
- **hand-written**: `SelectedPreacts`, whose backward is one `embedding_bag` and its weight gradient;
- **autograd**: the selected values recomputed through a gather of the encoder rows, which builds
  (batch, k, d) tensors in the forward and the backward (what the trainer did before).
It also checks that both give the same gradients. Results go to benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steering.offline.train import TopKTrainer  # noqa: E402


class GatherTrainer(TopKTrainer):
    def select(self, x, k, mask=None):
        xc = x - self.b_dec
        with torch.no_grad():
            pre = xc @ self.enc.T + self.b_enc
            if mask is not None:
                pre = pre.masked_fill(~mask, float("-inf"))
            idx = pre.topk(k, dim=-1).indices
        values = torch.einsum("bkd,bd->bk", F.embedding(idx, self.enc), xc) + self.b_enc[idx]
        return idx, torch.relu(values)


def step(model, opt, x, dead):
    x_hat, _, _ = model(x)
    loss = (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    e = (x[:512] - x_hat[:512]).detach()
    a_idx, a_acts = model.select(x[:512], 256, mask=dead.unsqueeze(0))
    aux = (model.decode_sparse(a_idx, a_acts) - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    opt.zero_grad(set_to_none=True)
    (loss + aux / 32).backward()
    model.remove_parallel_grad()
    opt.step()
    model.normalise_decoder()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_step.json")
    args = p.parse_args()
    torch.manual_seed(0)
    d, n_features, k, batch = 576, 16384, 64, 2048
    x = torch.randn(batch, d) * 3
    dead = torch.zeros(n_features, dtype=torch.bool)
    dead[:2000] = True
    models = {"hand-written": TopKTrainer(d, n_features, k), "autograd": GatherTrainer(d, n_features, k)}
    with torch.no_grad():
        models["hand-written"].b_enc.normal_()
    models["autograd"].load_state_dict(models["hand-written"].state_dict())

    grads = {}
    for name, m in models.items():
        x_hat, _, _ = m(x)
        (x_hat - x).pow(2).sum().backward()
        grads[name] = {n: q.grad.clone() for n, q in m.named_parameters()}
        m.zero_grad(set_to_none=True)
    rel = max(float((grads["hand-written"][n] - grads["autograd"][n]).norm() / grads["autograd"][n].norm())
              for n in grads["autograd"])

    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds + 1):
        for name, m in models.items():
            t0 = time.perf_counter()
            step(m, opts[name], x, dead)
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    result = {"shape": {"d_in": d, "d_sae": n_features, "k": k, "batch": batch, "aux_rows": 512, "aux_k": 256},
              "threads": torch.get_num_threads(), "rounds": args.rounds,
              "step_seconds_median": med, "speedup": med["autograd"] / med["hand-written"],
              "max_relative_gradient_difference": rel}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
