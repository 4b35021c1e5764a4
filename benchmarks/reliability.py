"""Bounded load and cancellation check of the app on loopback: `python benchmarks/reliability.py`.

Starts `python app.py` itself on a free 127.0.0.1 port with the test demo config (the real
embedded SmolLM2 and a test-written SAE, as in `tests/conftest.write_test_demo`), runs a fixed
number of requests through gradio_client, stops the app, writes
`benchmarks/results/reliability.json` and prints a summary. Exit status 1 if a check failed.

(a) Isolation: 8 sessions, each with its own random steering (fixed seed), 3 greedy requests each.
    Every answer is first computed alone, one request at a time, through the same server; then
    the 8 sessions run at once (--concurrency 2, so visitors queue) and every answer must
    equal its solo answer. Each client polls its job's status, so the queue position (rank)
    that waiting visitors are shown is recorded.
Control: 100 short streams (2-9 tokens) run to the end, for the resident-memory baseline.
(b) Cancellation: 20 warm-up cancels, then 100 streams (64 tokens max, 4 at a time), each cancelled after a random number
    of streamed chunks. Then /status must report no generation in flight, the server's resident
    memory is compared with its value before the cancels, and a final greedy request must equal
    its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import write_test_demo  # noqa: E402  (the same demo the app tests serve)
from tests.helpers import start_app, stop_app  # noqa: E402  (launched as the app tests launch it)

PROMPTS = [
    "Tell me about your favourite city.",
    "What should I cook tonight?",
    "Describe the sea in two sentences.",
    "Give me one tip for learning to draw.",
    "Why is the sky blue?",
    "Write a short note to a friend.",
]
MODES = ["own", "add", "clamp", "pin"]
WARMUP_CANCELS = 20


def chat_args(req: dict, tokens: int) -> tuple:
    return (req["prompt"], None, req["strengths"], req["mode"], None, tokens, 0.0)


def sessions_plan(rng: random.Random, n_sessions: int, per_session: int) -> list[list[dict]]:
    """Each session's requests: its own random strengths and mode (kept inside the slider range)."""
    plan = []
    for _ in range(n_sessions):
        strengths = {"L15:3": round(rng.uniform(-110, 110), 1), "L15:4": rng.choice([None, round(rng.uniform(-110, 110), 1)])}
        mode = rng.choice(MODES)
        plan.append([{"prompt": p, "strengths": strengths, "mode": mode} for p in rng.sample(PROMPTS, per_session)])
    return plan


def active(client: Client) -> int:
    return int(client.predict(api_name="/status")["active_generations"])


def wait_idle(client: Client, timeout: float = 60) -> int:
    deadline = time.time() + timeout
    n = active(client)
    while n and time.time() < deadline:
        time.sleep(0.1)
        n = active(client)
    return n


def isolation(url: str, plan: list[list[dict]], tokens: int) -> dict:
    solo_client = Client(url, verbose=False)
    solo = [[solo_client.predict(*chat_args(r, tokens), api_name="/chat") for r in session] for session in plan]
    distinct = len({tuple(s) for s in solo})
    clients = [Client(url, verbose=False) for _ in plan]
    barrier = threading.Barrier(len(plan))
    results: list[list[str | None]] = [[None] * len(s) for s in plan]
    max_rank = [0] * len(plan)
    queue_sizes: list[int] = []
    errors: list[str] = []

    def run(i: int) -> None:
        barrier.wait(60)
        for j, req in enumerate(plan[i]):
            try:
                job = clients[i].submit(*chat_args(req, tokens), api_name="/chat")
                while not job.done():
                    st = job.status()
                    if st.rank is not None and st.rank > max_rank[i]:
                        max_rank[i] = st.rank
                    if st.queue_size:
                        queue_sizes.append(st.queue_size)
                    time.sleep(0.02)
                results[i][j] = job.outputs()[-1] if job.outputs() else job.result()
            except Exception as exc:  # counted, not raised: the run goes on and reports it
                errors.append(f"session {i} request {j}: {type(exc).__name__}: {str(exc)[:200]}")

    start = time.time()
    with ThreadPoolExecutor(len(plan)) as pool:
        list(pool.map(run, range(len(plan))))
    mismatches = [(i, j) for i in range(len(plan)) for j in range(len(plan[i])) if results[i][j] != solo[i][j]]
    return {
        "sessions": len(plan),
        "requests_per_session": len(plan[0]),
        "solo_requests": sum(len(s) for s in plan),
        "concurrent_requests": sum(len(s) for s in plan),
        "distinct_session_answer_sets": distinct,
        "mismatches_with_solo": len(mismatches),
        "mismatched": mismatches,
        "errors": errors,
        "clients_shown_a_queue_position": sum(r > 0 for r in max_rank),
        "max_queue_rank_seen": max(max_rank),
        "max_queue_size_seen": max(queue_sizes, default=0),
        "concurrent_phase_s": round(time.time() - start, 1),
    }


def completed_control(url: str, pid: int, n: int, rng: random.Random) -> dict:
    """The same number of short streams run to the end instead of being cancelled: the RSS baseline."""
    proc = psutil.Process(pid)
    clients = [Client(url, verbose=False) for _ in range(4)]
    reqs = [(rng.choice(PROMPTS), {"L15:3": round(rng.uniform(-110, 110), 1)}, rng.choice(MODES), rng.randint(2, 9)) for _ in range(n)]
    errors: list[str] = []

    def worker(w: int) -> None:
        for prompt, strengths, mode, tokens in reqs[w::len(clients)]:
            try:
                clients[w].predict(prompt, None, strengths, mode, None, tokens, 0.0, api_name="/chat")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    before = proc.memory_info().rss
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(worker, range(len(clients))))
    after = proc.memory_info().rss
    return {"completed_requests": n, "errors": errors, "rss_before_mib": round(before / 2**20, 1), "rss_after_mib": round(after / 2**20, 1),
            "rss_growth_mib": round((after - before) / 2**20, 1)}


def cancellation(url: str, pid: int, n_cancels: int, rng: random.Random, baseline_req: dict, baseline: str, tokens: int) -> dict:
    status_client = Client(url, verbose=False)
    proc = psutil.Process(pid)
    warm = WARMUP_CANCELS
    stops = [rng.randint(1, 8) for _ in range(warm + n_cancels)]
    reqs = [{"prompt": rng.choice(PROMPTS), "strengths": {"L15:3": round(rng.uniform(-110, 110), 1)}, "mode": rng.choice(MODES)} for _ in range(warm + n_cancels)]
    errors: list[str] = []
    mid_stream: dict[int, bool] = {}
    clients = [Client(url, verbose=False) for _ in range(4)]

    def one(k: int) -> None:
        client = clients[k % len(clients)]
        try:
            job = client.submit(*chat_args(reqs[k], 64), api_name="/chat")
            deadline = time.time() + 120
            while len(job.outputs()) < stops[k] and not job.done() and time.time() < deadline:
                time.sleep(0.01)
            finished = job.done()
            job.cancel()
            mid_stream[k] = not finished
        except Exception as exc:
            errors.append(f"cancel {k}: {type(exc).__name__}: {str(exc)[:200]}")

    def worker_over(todo: list[int]):
        def worker(w: int) -> None:
            for k in todo[w::len(clients)]:
                one(k)
        return worker

    rss_cold = proc.memory_info().rss
    with ThreadPoolExecutor(len(clients)) as pool:  # warm-up, not counted: 64-token caches, worker threads, allocator arenas
        list(pool.map(worker_over(list(range(warm))), range(len(clients))))
    assert wait_idle(status_client) == 0
    rss_before = proc.memory_info().rss
    threads_before = proc.num_threads()
    start = time.time()
    samples = [round(rss_before / 2**20, 1)]
    seconds_to_idle = []
    batch = max(1, n_cancels // 4)
    for first in range(warm, warm + n_cancels, batch):  # 4 batches, 4 clients at a time; RSS sampled after each batch
        todo = list(range(first, min(first + batch, warm + n_cancels)))

        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(worker_over(todo), range(len(clients))))
        t0 = time.time()
        left_active = wait_idle(status_client)  # /status counts requests the decoder has not yet ended (engine.active_requests)
        seconds_to_idle.append(round(time.time() - t0, 2))
        samples.append(round(psutil.Process(pid).memory_info().rss / 2**20, 1))
    time.sleep(1.0)
    rss_after = proc.memory_info().rss
    threads_after = proc.num_threads()
    final = status_client.predict(*chat_args(baseline_req, tokens), api_name="/chat")
    return {
        "cancels": n_cancels,
        "warmup_cancels_not_counted": warm,
        "rss_before_warmup_mib": round(rss_cold / 2**20, 1),
        "cancelled_mid_stream": sum(v for k, v in mid_stream.items() if k >= warm),
        "finished_before_cancel": sum(not v for k, v in mid_stream.items() if k >= warm),
        "errors": errors,
        "active_generations_after": left_active,
        "server_threads_before": threads_before,
        "server_threads_after": threads_after,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "rss_growth_mib": round((rss_after - rss_before) / 2**20, 1),
        "rss_after_each_quarter_mib": samples,
        "rss_growth_second_half_mib": round(samples[-1] - samples[len(samples) // 2], 1),
        "seconds_until_no_generation_after_each_quarter": seconds_to_idle,
        "final_request_equals_baseline": final == baseline,
        "cancel_phase_s": round(time.time() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="requests per session")
    parser.add_argument("--tokens", type=int, default=20, help="max new tokens of the isolation requests")
    parser.add_argument("--cancels", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="steering-reliability-") as tmp:
        proc, url, log_path = start_app(write_test_demo(Path(tmp)), flags=("--concurrency", str(args.concurrency)))
        try:
            boot_s = round(time.time() - started, 1)
            client = Client(url, verbose=False)
            baseline_req = {"prompt": PROMPTS[0], "strengths": None, "mode": "own"}
            baseline = client.predict(*chat_args(baseline_req, args.tokens), api_name="/chat")
            plan = sessions_plan(rng, args.sessions, args.requests)
            iso = isolation(url, plan, args.tokens)
            control = completed_control(url, proc.pid, args.cancels, rng)
            canc = cancellation(url, proc.pid, args.cancels, rng, baseline_req, baseline, args.tokens)
            log_text = log_path.read_text(errors="replace")
        finally:
            stop_app(proc)
    served = 1 + iso["solo_requests"] + iso["concurrent_requests"] + control["completed_requests"] + canc["warmup_cancels_not_counted"] + canc["cancels"] + 1
    errors = len(iso["errors"]) + len(control["errors"]) + len(canc["errors"])
    checks = {
        "no_errors": errors == 0,
        "answers_match_solo": iso["mismatches_with_solo"] == 0,
        "sessions_steered_differently": iso["distinct_session_answer_sets"] == args.sessions,
        "queue_position_shown": iso["clients_shown_a_queue_position"] > 0,
        "no_generation_left_after_cancels": canc["active_generations_after"] == 0,
        "final_answer_equals_baseline": canc["final_request_equals_baseline"],
        "no_traceback_in_app_log": "Traceback" not in log_text,
    }
    result = {
        "command": "python benchmarks/reliability.py",
        "settings": {k: getattr(args, k) for k in ("sessions", "requests", "tokens", "cancels", "concurrency", "seed")},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "requests_served": served,
        "errors": errors,
        "isolation": iso,
        "completed_control": control,
        "cancellation": canc,
        "checks": checks,
        "passed": all(checks.values()),
        "app_start_s": boot_s,
        "total_s": round(time.time() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"requests served: {served} ({args.sessions} sessions x {args.requests} solo + concurrent, {args.cancels} completed short streams, {WARMUP_CANCELS} warm-up + {args.cancels} cancels, 2 baseline)")
    print(f"errors: {errors}; answers differing from solo: {iso['mismatches_with_solo']}; clients shown a queue position: "
          f"{iso['clients_shown_a_queue_position']}/{args.sessions} (max rank {iso['max_queue_rank_seen']})")
    print(f"cancels: {canc['cancels']} ({canc['cancelled_mid_stream']} mid-stream); generations left: {canc['active_generations_after']}; "
          f"server threads {canc['server_threads_before']} -> {canc['server_threads_after']}; "
          f"RSS {canc['rss_before_mib']} -> {canc['rss_after_mib']} MiB ({canc['rss_growth_mib']:+} MiB; "
          f"{canc['rss_growth_second_half_mib']:+} MiB over the last half; samples {canc['rss_after_each_quarter_mib']})")
    print(f"control: {control['completed_requests']} short streams run to the end: RSS {control['rss_before_mib']} -> {control['rss_after_mib']} MiB ({control['rss_growth_mib']:+} MiB)")
    print(f"final answer equals baseline: {canc['final_request_equals_baseline']}; total {result['total_s']} s")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
