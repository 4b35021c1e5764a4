"""Per-feature numbers shipped with an SAE: density and activation histogram on held-out text, and the
output score. Written to `feature_stats.safetensors` beside the SAE; read by
`steering.inspection.cards`.

    python -m steering.offline.heldout                                 # the held-out activation cache
    python -m steering.offline.feature_stats saes/smollm2-135m-instruct/layer_15 [--alpha 1.0]

- **density** of feature i: `#{positions where a_i > 0} / N` over the N held-out positions
  (`steering.offline.heldout`; position 0 of each window and attention sinks left out, as in training).
- **histogram**: counts of a_i > 0 in `BINS` log-spaced bins; edges `hist_edges` (BINS + 1) shared by
  every feature, the first bin taking everything below edge 1 and the last everything above edge BINS - 1.
- **output score** (`steering.inspection.output_score`): steering strength `s = alpha * N_L`, N_L the
  layer's typical residual norm (`capture.typical_norm`), on `neutral_prompt_ids`; also `output_base`
  (the same tokens unsteered) and `raised` (the 10 tokens steering raises most, mean log-probability gain)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from steering.sae import SAE

FILENAME = "feature_stats.safetensors"
BINS = 16
EDGES = torch.logspace(-1, 2, BINS + 1)
"""0.1 to 100: the shipped SAE's non-zero activations (0.5% quantile 0.25, max ~80) fall inside."""


@torch.inference_mode()
def density_histogram(sae: SAE, acts: Tensor, edges: Tensor = EDGES, batch_size: int = 4096,
                      sink_threshold: float | None = None) -> tuple[Tensor, Tensor, int]:
    """(fire counts (F,), histogram (F, len(edges) - 1), positions counted) of the SAE's codes on `acts` (N, d)."""
    sae32 = sae.to(dtype=torch.float32)
    F_, bins = sae.d_sae, len(edges) - 1
    counts = torch.zeros(F_, dtype=torch.long)
    hist = torch.zeros(F_ * bins, dtype=torch.long)
    inner = edges[1:-1].float()
    n = 0
    for b in range(0, len(acts), batch_size):
        x = acts[b : b + batch_size].float()
        if sink_threshold is not None:
            x = x[x.norm(dim=-1) <= sink_threshold]
        codes = sae32.encode(x)
        local, feat = (codes > 0).nonzero(as_tuple=True)
        counts += torch.bincount(feat, minlength=F_)
        which = torch.bucketize(codes[local, feat], inner, right=True)  # 0 .. bins-1
        hist += torch.bincount(feat * bins + which, minlength=F_ * bins)
        n += len(x)
    return counts, hist.view(F_, bins), n


def compute(folder: Path, cache: Path, alpha: float = 1.0, batch_size: int = 128, progress: bool = True,
            skip_output: bool = False) -> dict:
    """All the numbers for one SAE folder: held-out cache `cache`; returns what was written, with timings."""
    from steering.backends.hooks import HooksBackend
    from steering.backends.reads import output_scores
    from steering.inspection.capture import typical_norm
    from steering.inspection.output_score import neutral_prompt_ids
    from steering.model.loading import load_model
    from steering.offline.activations import load_cache
    from steering.offline.model_card import sink_threshold_of
    from steering.sae import load_sae

    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    layer, model_name = int(cfg["hook_layer"]), cfg["model_name"]
    sae = load_sae(folder)
    t0 = time.perf_counter()
    counts, hist, n = density_histogram(sae, load_cache(cache)["acts"], sink_threshold=sink_threshold_of(folder))
    tensors = {"density": counts.float() / n, "fire_count": counts.int(), "histogram": hist.int(),
               "hist_edges": EDGES.float()}
    meta = {"heldout_tokens": str(n), "heldout_cache": Path(cache).name, "bins": str(BINS),
            "density_seconds": f"{time.perf_counter() - t0:.1f}"}
    if not skip_output:
        model, tok = load_model(model_name, device="cpu", dtype="float32")[:2]
        with HooksBackend(model, tok) as backend:
            norm = typical_norm(backend, layer)
        prompts = neutral_prompt_ids(tok)
        t1, c1 = time.perf_counter(), time.process_time()
        scores = output_scores(model, layer, sae.W_dec.float(), prompts, alpha * norm, batch_size=batch_size,
                               raised=10, progress=progress)
        tensors |= {"output_score": scores.score, "output_base": scores.base, "raised": scores.raised.int()}
        meta |= {"output_alpha": str(alpha), "typical_norm": f"{norm:.3f}", "output_strength": f"{alpha * norm:.3f}",
                 "output_prompts": json.dumps([tok.decode(p) for p in prompts]),
                 "output_seconds": f"{time.perf_counter() - t1:.1f}",
                 "output_cpu_seconds": f"{time.process_time() - c1:.1f}", "output_batch": str(batch_size),
                 "torch_threads": str(torch.get_num_threads())}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / FILENAME), metadata=meta)
    (folder / FILENAME).chmod(0o644)
    return meta


def main(argv: list[str] | None = None) -> None:
    from steering.model.embedded import cache_root
    from steering.offline.activations import default_cache_dir
    from steering.offline.heldout import SPLIT

    p = argparse.ArgumentParser(prog="python -m steering.offline.feature_stats", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--cache", type=Path, default=None, help="held-out activation cache (default: `heldout`'s)")
    p.add_argument("--corpus", type=Path, default=cache_root() / "corpus")
    p.add_argument("--alpha", type=float, default=1.0, help="output-score strength, in typical residual norms")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--skip-output", action="store_true")
    args = p.parse_args(argv)
    cfg = json.loads((args.folder / "cfg.json").read_text())
    cache = args.cache or default_cache_dir(cfg["model_name"], int(cfg["hook_layer"]), args.corpus, SPLIT)
    print(json.dumps(compute(args.folder, cache, args.alpha, args.batch_size, skip_output=args.skip_output), indent=2))


if __name__ == "__main__":
    main()
