"""Steering inside vLLM: what it costs, and how it compares with the transformers backend (CPU here).

    STEERING_VLLM_SUITE=1 .venv-vllm/bin/python benchmarks/vllm_serving.py [--rounds 3] [--tokens 48]

Interleaved rounds (medians), greedy answers to 8 different prompts at once:
- vLLM plain / one steering config for all 8 / 8 distinct configs: aggregate tok/s and time to first token;
- the transformers backend (batched) against the vLLM backend at 1, 4 and 8 concurrent chats.
Writes benchmarks/results/vllm_serving.{json,md}. Ratios are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from steering.config import FeatureSpec, VLLMSettings, load_config
from steering.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Tell me about your weekend.", "How do I fix a squeaky door?", "Write a short note to a neighbour.",
           "What makes a good breakfast?", "Describe a busy train station.", "How can I sleep better?",
           "Give me tips for a job interview.", "What is a good hobby to start?"]
KEYS = [(15, 8672), (15, 8241), (15, 15305), (15, 6759)]


def plans(engine, kind: str):
    features = [FeatureSpec(layer=layer, index=index) for layer, index in KEYS]
    if kind == "plain":
        return [None] * 8
    if kind == "one":
        return [engine.plan_resolved({features[0].key: 40.0}, "clamp", features)] * 8
    return [engine.plan_resolved({f.key: s}, m, features) for f in features for s, m in ((40.0, "clamp"), (25.0, "add"))]


def run(engine, plan_list, settings, n: int) -> dict:
    """n requests at once (one thread each, as n visitors); aggregate tok/s and median time to first token."""
    firsts, rows = [], []

    def one(i):
        t0 = time.perf_counter()
        stream = engine.stream(PROMPTS[i % 8], settings=settings, plan=plan_list[i % len(plan_list)] or
                               engine.plan_resolved({}, None, []))
        for k, _ in enumerate(stream):
            if k == 0:
                firsts.append(time.perf_counter() - t0)
        rows.append(len(stream.requests[0].tokens))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"tok_s": sum(rows) / wall, "ttft_s": statistics.median(firsts), "tokens": sum(rows)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--steering-only", action="store_true",
                   help="only plain vs steered vLLM (more rounds fit); writes vllm_steering_cost.*")
    args = p.parse_args()
    torch.set_num_threads(2)
    base = replace(load_config(ROOT / "demo.yaml"), device="cpu", dtype="float32")
    settings = replace(base.generation, temperature=0.0, max_new_tokens=args.tokens)
    served = Engine.from_config(replace(base, backend="vllm", vllm=VLLMSettings(max_model_len=1024, kv_cache_gib=1)))
    hf = None if args.steering_only else Engine.from_config(base, batching=True, max_batch=8)
    results: dict = {"rounds": args.rounds, "tokens": args.tokens, "cpu_threads": torch.get_num_threads(), "raw": []}
    cases = [("vllm", k, 8) for k in ("plain", "one", "distinct")]
    if hf is not None:
        cases += [(b, "distinct", n) for n in (1, 4) for b in ("vllm", "hf")] + [("hf", "distinct", 8)]
    run(served, plans(served, "plain"), settings, 2)  # warm both
    if hf is not None:
        run(hf, plans(hf, "plain"), settings, 2)
    for r in range(args.rounds):
        for backend, kind, n in cases:
            engine = served if backend == "vllm" else hf
            m = run(engine, plans(engine, kind), settings, n)
            results["raw"].append({"round": r, "backend": backend, "steering": kind, "concurrent": n, **m})
            print(backend, kind, n, {k: round(v, 3) for k, v in m.items()}, flush=True)
    med = {}
    for backend, kind, n in cases:
        xs = [x for x in results["raw"] if (x["backend"], x["steering"], x["concurrent"]) == (backend, kind, n)]
        med[f"{backend}/{kind}/{n}"] = {k: statistics.median(x[k] for x in xs) for k in ("tok_s", "ttft_s")}
    results["median"] = med
    plain = med["vllm/plain/8"]["tok_s"]
    results["ratios"] = {"one_config_vs_plain": med["vllm/one/8"]["tok_s"] / plain,
                         "distinct_configs_vs_plain": med["vllm/distinct/8"]["tok_s"] / plain}
    if hf is not None:
        results["ratios"] |= {f"vllm_vs_hf_at_{n}": med[f"vllm/distinct/{n}"]["tok_s"] / med[f"hf/distinct/{n}"]["tok_s"]
                              for n in (1, 4, 8)}
    out = ROOT / "benchmarks" / "results" / ("vllm_steering_cost" if args.steering_only else "vllm_serving")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = ["| backend | steering | concurrent | tok/s (aggregate) | time to first token (s) |", "|---|---|---|---|---|"]
    for key, v in med.items():
        b, k, n = key.split("/")
        lines.append(f"| {b} | {k} | {n} | {v['tok_s']:.1f} | {v['ttft_s']:.2f} |")
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in results["ratios"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    served.close()
    if hf is not None:
        hf.close()


if __name__ == "__main__":
    main()
