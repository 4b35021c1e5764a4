"""Many visitors: 4 concurrent steered chats, batched into one forward pass per step.

`python benchmarks/batching.py` loads the embedded default (demo.yaml) and serves four chats at
once, each with different steering (its own features, modes and strengths), greedy, up to
`--tokens` new tokens each. Three configurations run interleaved, `--reps` times, in one run:
- solo: each of the four chats alone (the single-chat speed is the median over all of them);
- threads: the four at once on four threads, each its own `generate` (no batching);
- batched: the four at once through an `Engine` built with `batching=True`, one batch with per-row
  steering (`engine.batcher.batch_sizes` confirms each run formed one batch of four).
Every chat is an `engine.stream(...)` consumed on its own thread, so all three arms take the one
generation path (`steering.generate.decode.Decoder.run`); solo and threads use an engine built
without batching, batched one built with it, both on the same loaded model.
Aggregate tokens/s is all new tokens over the wall time from the first start to the last end.

A batching engine also routes the model's linear layers through `steering.generate.small_batch` for
batched steps (B = 1 steps and prefills are untouched); the per-shape timings of both products are
recorded too (`kernels`).

Correctness, in the same run: each batched row's text against the same chat alone, and each
row's logits at every step against a teacher-forced forward pass of that chat alone (steered by
the solo `steering()` block), as the maximum absolute difference.
Results go to benchmarks/results/batching.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steering.config import GenerationSettings  # noqa: E402
from steering.engine import Engine  # noqa: E402
from steering.generate.small_batch import time_shapes  # noqa: E402

PROMPTS = [  # each answer runs to the token limit
    "Write a long story about a family trip to the mountains.",
    "Describe your ideal morning routine in detail.",
    "Describe a walk through a busy city at night.",
    "Tell me about the history of the printing press.",
]


def demo_chats(features) -> list[tuple[str, dict[str, float], str | None]]:
    """(prompt, strengths by feature key, mode override) for each prompt: demo.yaml's features in turn, each at
    its recommended strength and mode, the fourth chat with two features at once in clamp mode."""
    f = list(features)
    chats = [(PROMPTS[i], {f[i % len(f)].key: f[i % len(f)].strength}, f[i % len(f)].mode) for i in range(3)]
    pair = {f[3 % len(f)].key: f[3 % len(f)].strength, f[4 % len(f)].key: f[4 % len(f)].strength / 2}
    return chats + [(PROMPTS[3], pair, "clamp")]


def run_chats(engine: Engine, chats, settings: GenerationSettings) -> tuple[float, int, list[str]]:
    """Start all chats at once, each consumed on its own thread; (seconds, new tokens, texts)."""
    texts = [""] * len(chats)
    streams = []

    def consume(i: int) -> None:
        texts[i] = "".join(streams[i])

    started = time.perf_counter()
    for prompt, strengths, mode in chats:
        streams.append(engine.stream(prompt, plan=engine.plan(strengths, mode), settings=settings))
    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(chats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return seconds, sum(len(s.new_token_ids) for s in streams), texts


def logits_check(solo: Engine, batched: Engine, chats, settings: GenerationSettings) -> dict:
    """Batched rows against the same chats alone: same text, and the largest logit difference."""
    plans = [solo.plan(s, m) for _, s, m in chats]
    encoded = [solo.encode([{"role": "user", "content": p}]) for p, _, _ in chats]
    streams = [batched.stream(p, plan=plan, settings=settings, record_logits=True) for (p, _, _), plan in zip(chats, plans)]
    texts = [""] * len(streams)
    threads = [threading.Thread(target=lambda i=i: texts.__setitem__(i, "".join(streams[i]))) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batch_sizes = batched.batcher.batch_sizes[-1:]
    same_text, diffs = [], []
    for (prompt, _, _), ids, plan, g, text in zip(chats, encoded, plans, streams, texts):
        same_text.append("".join(solo.stream(prompt, plan=plan, settings=settings)) == text)
        full = torch.cat([ids[0], g.new_token_ids]).unsqueeze(0)
        with torch.inference_mode(), solo.backend.hooks.steering(plan, ids, solo.backend.special_ids):
            reference = solo.model(full).logits[0, ids.shape[-1] - 1 : -1]
        diffs.append(float((g.logits - reference).abs().max()))
    return {"same_text_as_alone": same_text, "max_abs_logit_diff": max(diffs), "per_row_max_abs_logit_diff": diffs,
            "batch_sizes": batch_sizes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--window-ms", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batching.json")
    args = p.parse_args()
    solo = Engine.from_config(ROOT / "demo.yaml", log=lambda m: None)
    chats = demo_chats(solo.features)
    batched = Engine.for_model(solo.config, solo.model, solo.tokenizer, solo.vectors, batching=True,
                     batch_window_s=args.window_ms / 1000, max_batch=len(chats), log=lambda m: None)
    settings = GenerationSettings(max_new_tokens=args.tokens, temperature=0.0, repetition_penalty=1.0)
    runs: dict[str, list[float]] = {"solo": [], "threads": [], "batched": []}
    tokens: dict[str, list[int]] = {k: [] for k in runs}
    run_chats(solo, chats[:1], GenerationSettings(max_new_tokens=4, temperature=0.0))  # warm up
    run_chats(batched, chats, GenerationSettings(max_new_tokens=4, temperature=0.0))
    batch_sizes = []
    for rep in range(args.reps):
        for chat in chats:
            s, n, _ = run_chats(solo, [chat], settings)
            runs["solo"].append(n / s)
            tokens["solo"].append(n)
        s, n, _ = run_chats(solo, chats, settings)
        runs["threads"].append(n / s)
        tokens["threads"].append(n)
        first = len(batched.batcher.batch_sizes)
        s, n, _ = run_chats(batched, chats, settings)
        runs["batched"].append(n / s)
        tokens["batched"].append(n)
        batch_sizes.append(batched.batcher.batch_sizes[first:])
        print(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f} tok/s" for k, v in runs.items()), flush=True)
    check = logits_check(solo, batched, chats, settings)
    batched.close()
    solo.close()
    single = statistics.median(runs["solo"])
    result = {
        "command": "python benchmarks/batching.py " + " ".join(sys.argv[1:]),
        "device": f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})",
        "model": "SmolLM2-135M-Instruct fp32 (embedded default)",
        "chats": [{"prompt": p, "strengths": {str(k): v for k, v in s.items()}, "mode": m or "own"} for p, s, m in chats],
        "max_new_tokens": args.tokens,
        "reps": args.reps,
        "window_ms": args.window_ms,
        "tokens_per_s": {k: round(statistics.median(v), 2) for k, v in runs.items()},
        "all_tokens_per_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "new_tokens": {k: tokens[k] for k in tokens},
        "batched_arm_batch_sizes": batch_sizes,
        "aggregate_vs_single": {
            "threads": round(statistics.median(runs["threads"]) / single, 3),
            "batched": round(statistics.median(runs["batched"]) / single, 3),
        },
        "correctness": check,
        "kernels": time_shapes([(49152, 576), (1536, 576), (576, 1536), (576, 576)], [1, 2, 4, 8]),
        "targets": {"batched aggregate vs single": ">= 2.5", "logits vs alone": "max abs diff < 1e-3"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("tokens_per_s", "aggregate_vs_single", "correctness")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
