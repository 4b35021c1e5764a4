"""The activation-caching forward pass in float32 against bfloat16 autocast, and how far apart their residuals are.

`python benchmarks/caching_speed.py [--corpus DIR] [--layer 26] [--windows 16] [--repeats 3]` runs
`steering.offline.activations.layer_activations` (the forward to the layer, stopped there, as the cache runs it) on
the same `--windows` training windows of 256 tokens both ways, alternating in one process so both see the same
machine, and reports positions per second and, per position, the relative error `||h_bf16 - h_fp32|| / ||h_fp32||`
and the cosine between the two residuals (position 0 left out, as the cache leaves it out). On a CPU with AMX
(Sapphire Rapids and later) bfloat16 matrix products run several times faster than float32 ones. Results go to
benchmarks/results/caching_speed.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steering.model.embedded import cache_root  # noqa: E402


def main() -> None:
    from steering.model.loading import load_model
    from steering.offline.activations import layer_activations, windows
    from steering.offline.corpus import document_ids, read_documents

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=cache_root() / "corpus-wide")
    p.add_argument("--layer", type=int, default=26)
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "caching_speed.json")
    args = p.parse_args()
    model, tok = load_model("embedded:smollm2-135m-instruct", device="cpu", dtype="float32")[:2]
    docs = read_documents(args.corpus / "train.jsonl")
    wins = []
    for doc in docs:
        wins += [w for w in windows([document_ids(tok, doc)], 256) if len(w) == 256]
        if len(wins) >= args.windows:
            break
    wins = wins[: args.windows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ways = {"float32": contextlib.nullcontext, "bfloat16_autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}
    times = {k: [] for k in ways}
    outs = {}
    for k, ctx in ways.items():  # warm-up
        with ctx():
            layer_activations(model, wins[:2], args.layer, pad)
    for _ in range(args.repeats):
        for k, ctx in ways.items():
            with ctx():
                t = time.perf_counter()
                outs[k] = layer_activations(model, wins, args.layer, pad)
                times[k].append(time.perf_counter() - t)
    positions = sum(len(w) for w in wins)
    ref = torch.cat([h[1:] for h in outs["float32"]])
    low = torch.cat([h[1:] for h in outs["bfloat16_autocast"]])
    rel = (low - ref).norm(dim=1) / ref.norm(dim=1)
    cos = torch.nn.functional.cosine_similarity(low, ref, dim=1)
    speed = {k: positions / statistics.median(v) for k, v in times.items()}
    result = {
        "command": "python benchmarks/caching_speed.py " + " ".join(sys.argv[1:]),
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "layer": args.layer, "windows": len(wins), "positions": positions, "repeats": args.repeats,
        "seconds": times,
        "positions_per_second": {k: round(v) for k, v in speed.items()},
        "speedup": round(speed["bfloat16_autocast"] / speed["float32"], 2),
        "relative_error": {"median": float(rel.median()), "p99": float(rel.quantile(0.99)), "max": float(rel.max())},
        "cosine": {"median": float(cos.median()), "min": float(cos.min())},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("positions_per_second", "speedup", "relative_error", "cosine")}, indent=2))


if __name__ == "__main__":
    main()
