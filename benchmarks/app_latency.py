"""The app's own costs on the embedded default: startup, time to first token, inspector, memory.

`python benchmarks/app_latency.py [--reps N]` starts `python app.py` (demo.yaml, model already
cached) on a loopback port and measures, in one run:
- startup: from launching the process to the page answering;
- time to first token (TTFT) of /chat through `gradio_client`, and of the library called in this
  process (`Engine.stream`, an engine built without batching), same prompt, steering and settings.
  Every timer starts before the call (`client.submit` / `Engine.stream`) and stops when the first
  non-empty text is in hand;
  every run lets its answer finish before the next starts, and the arms alternate, so background
  load falls on all alike. Arms: iterating the job (`for partial in client.submit(...)`, as the
  README shows), polling `job.outputs()`, the library, and the library beside a thread that
  wakes every millisecond (as Gradio's queue loop does in the server: on a busy virtual machine
  that alone changes torch's speed, so direct differences carry the model's speed too);
- where the app's time goes: a second server runs app.py with a timestamp at each stage
  (`--traced-server`: this file patches Gradio and the library in that process only, then runs
  app.py), and the client's side is timestamped too, on the same monotonic clock. The library's
  stages are the one generation path's: `Batcher._run` (a request's generation thread starts, after
  the batching window where there is one) and the first `RowText.on_finalized_text` (the first
  text piece decoded). The headline,
  what the app adds, is the app's time outside the model's computation (client, Gradio, service,
  stream) less the library's, whatever torch's speed in each process. The first answer after
  start is traced too;
- inspector: `DemoService.inspect` against one plain forward pass over the same prompt, in process;
- memory: the server's resident memory (anonymous and file-backed) after start, after the first
  answer (the weights are memory-mapped, so they become resident then), after the first
  inspection (the SAE and the feature labels load), and its peak while 1, 2, 3 and 4 chats from separate clients run at once.
Results go to benchmarks/results/app_latency.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import runpy
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import start_app, stop_app  # noqa: E402

PROMPT = "Tell me about your weekend plans."
TOKENS = 8
MEMORY_TOKENS = 64  # long enough that the concurrent answers overlap
TRACE_ENV = "STEERING_BENCH_TRACE"
clock = time.perf_counter  # CLOCK_MONOTONIC on Linux: the same clock in the server and in this process


# ---- the traced server (a subprocess of this benchmark; the shipped app is never changed) -------

def serve_traced() -> None:
    """Run app.py with a timestamp at each stage of a request, appended to $STEERING_BENCH_TRACE."""
    out = open(os.environ[TRACE_ENV], "a", buffering=1)

    def mark(tag: str) -> None:
        out.write(f"{clock():.6f} {tag}\n")

    import gradio.queueing
    import gradio.routes

    from steering.service.demo import DemoService

    app_call = gradio.routes.App.__call__

    async def traced_call(self, scope, receive, send):
        if scope.get("type") == "http" and scope.get("path", "").endswith("/queue/join"):
            mark("join_received")
        return await app_call(self, scope, receive, send)

    gradio.routes.App.__call__ = traced_call

    send_message = gradio.queueing.Queue.send_message

    @functools.wraps(send_message)
    def traced_send(self, event, message, *args, **kwargs):
        if _has_text(getattr(message, "msg", None), getattr(message, "output", None)):
            mark("text_sent")
        return send_message(self, event, message, *args, **kwargs)

    gradio.queueing.Queue.send_message = traced_send

    chat = DemoService.chat

    @functools.wraps(chat)
    def traced_chat(self, *args, **kwargs):
        mark("chat_entered")
        yield from chat(self, *args, **kwargs)

    DemoService.chat = traced_chat
    _trace_library(mark)
    sys.argv = ["app.py", *sys.argv[2:]]  # the options start_app gives after --traced-server
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


def _library_targets() -> tuple:
    """What `_trace_library` patches: the generation thread's entry and the detokenizer's output, as (owner, name)."""
    from steering.generate import batching, decode

    return (batching.Batcher, "_run"), (decode.RowText, "on_finalized_text")


def _trace_library(mark) -> None:
    """Timestamp the one generation path: 'generation_started' when a request's generation thread starts
    (`Batcher._run`: at once without batching, after the window with it; every answer, alone or batched, goes
    through it) and 'first_text' at each text piece the row's detokenizer (`RowText`) puts on the queue."""
    (batcher, run_name), (row_text, text_name) = _library_targets()
    run = getattr(batcher, run_name)

    def traced_run(self, rows):
        mark("generation_started")
        return run(self, rows)

    setattr(batcher, run_name, traced_run)
    finalized = getattr(row_text, text_name)

    def traced_text(self, text, stream_end=False):
        if text:
            mark("first_text")
        return finalized(self, text, stream_end)

    setattr(row_text, text_name, traced_text)


def _has_text(msg, output) -> bool:
    """A process_generating message whose output carries text (the first one only sets '')."""
    if str(msg).rsplit(".", 1)[-1] != "process_generating" or not isinstance(output, dict):
        return False
    return any(bool(d) for d in output.get("data") or [])


# ---- helpers -----------------------------------------------------------------------------------

def launch(argv: list[str], demo: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`argv` (app.py or the traced server) on a free loopback port; polled every 0.1 s so startup is timed finely."""
    proc, url, _ = start_app(demo, env, argv=argv, poll_s=0.1)
    return proc, url


def memory_mib(pid: int) -> dict:
    """Resident memory, split into anonymous (heap: torch, Python, caches) and file-backed (mapped weights, libraries)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss": fields["VmRSS"], "anon": fields["RssAnon"], "file": fields["RssFile"]}


def api_args(tokens: int = TOKENS) -> tuple:
    # message, history, strengths (None: the defaults), mode, add_features, max_new_tokens, temperature, top_p, repetition_penalty
    return (PROMPT, None, None, "own", None, tokens, 0.0, None, 1.0)


def app_ttft_iterated(client, marks: dict | None = None) -> float:
    """Iterate the job, as the README shows; returns once the first text is in hand, after the answer ends."""
    started = clock()
    if marks is not None:
        marks["submit"] = started
    job = client.submit(*api_args(), api_name="/chat")
    for piece in job:
        if piece:
            seconds = clock() - started
            if marks is not None:
                marks["piece"] = started + seconds
            break
    else:
        raise RuntimeError("no output")
    job.result()  # the next run starts on an idle server
    return seconds


def app_ttft_polled(client, marks: dict | None = None) -> float:
    """Poll `job.outputs()`, sleeping outside gradio_client's lock (`Job.__next__` sleeps inside it)."""
    started = clock()
    if marks is not None:
        marks["submit"] = started
    job = client.submit(*api_args(), api_name="/chat")
    while not any(job.outputs()):
        if job.done() and not any(job.outputs()):
            raise RuntimeError("no output")
        time.sleep(0.001)
    seconds = clock() - started
    if marks is not None:
        marks["piece"] = started + seconds
    job.result()
    return seconds


def library_ttft(engine, settings, marks: dict | None = None) -> float:
    started = clock()
    if marks is not None:
        marks["call"] = started
    seconds = None
    for piece in engine.stream(PROMPT, settings=settings):
        if piece and seconds is None:
            seconds = clock() - started
            if marks is not None:
                marks["piece"] = started + seconds
    if seconds is None:
        raise RuntimeError("no output")
    return seconds  # after the whole answer, like the app runs


def med_ms(xs) -> float:
    return round(statistics.median(xs) * 1000, 1)


# ---- phases --------------------------------------------------------------------------------------

def library_ttft_beside_sleeper(engine, settings) -> float:
    """The library with a thread in this process waking every millisecond, as Gradio's queue loop does in the
    server while it waits (it sleeps 1 ms when free). On a busy virtual machine that alone changes how fast torch
    runs (see the README), so this arm compares the app with the library under the same wake-ups."""
    done = threading.Event()

    def wake():
        while not done.is_set():
            time.sleep(0.001)

    waker = threading.Thread(target=wake, daemon=True)
    waker.start()
    try:
        return library_ttft(engine, settings)
    finally:
        done.set()
        waker.join()


def interleaved_ttft(client, engine, settings, reps: int) -> dict:
    arms = [("app_iterated", lambda: app_ttft_iterated(client)), ("app_polled", lambda: app_ttft_polled(client)),
            ("library", lambda: library_ttft(engine, settings)),
            ("library_beside_1ms_sleeper", lambda: library_ttft_beside_sleeper(engine, settings))]
    runs: dict[str, list[float]] = {name: [] for name, _ in arms}
    for i in range(reps):
        k = i % len(arms)
        for name, run in arms[k:] + arms[:k]:  # rotate, so no arm always follows another
            time.sleep(0.2)
            runs[name].append(run())
    return runs


def concurrent_memory(pid: int, url: str, max_sessions: int = 4) -> dict:
    """Peak resident memory while n chats (separate clients, i.e. separate visitors) run at once."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(max_sessions)]
    result = {"before": memory_mib(pid)["rss"], "peak": {}, "after": {}}
    for n in range(1, max_sessions + 1):
        barrier = threading.Barrier(n)
        done = threading.Event()
        peak = [0.0]

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], memory_mib(pid)["rss"])
                done.wait(0.005)

        def chat(c):
            barrier.wait(60)
            c.predict(*api_args(MEMORY_TOKENS), api_name="/chat")

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=chat, args=(c,)) for c in clients[:n]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        result["peak"][n] = peak[0]
        result["after"][n] = memory_mib(pid)["rss"]
        time.sleep(0.5)
    for c in clients:
        c.close()
    result["mib_per_extra_session"] = per_session(result["peak"])
    return result


def per_session(peaks: dict[int, float]) -> dict:
    """MiB per extra concurrent session: the least-squares slope of peak memory over n, and the steps between n."""
    ns = sorted(peaks)
    ys = [peaks[n] for n in ns]
    mean_n, mean_y = statistics.fmean(ns), statistics.fmean(ys)
    slope = sum((n - mean_n) * (y - mean_y) for n, y in zip(ns, ys)) / sum((n - mean_n) ** 2 for n in ns)
    return {"fit_slope": round(slope, 1), "differences": [round(b - a, 1) for a, b in zip(ys, ys[1:])]}


def traced_breakdown(demo: Path, engine, settings, reps: int) -> dict:
    """Per-stage medians (ms) of /chat through the traced server, and of the library in this process."""
    import gradio_client.client as gc_client
    from gradio_client import Client

    trace = demo.parent / "trace.log"
    trace.write_text("")
    local: list[tuple[float, str]] = []

    def mark(tag: str) -> None:
        local.append((clock(), tag))

    real_json = gc_client.json

    def loads(s, *args, **kwargs):  # gradio_client parses each SSE message here, on its reader thread
        msg = real_json.loads(s, *args, **kwargs)
        if isinstance(msg, dict) and _has_text(msg.get("msg"), msg.get("output")):
            mark("text_parsed")
        return msg

    saved = [(owner, name, owner.__dict__[name]) for owner, name in _library_targets()]
    proc, url = launch([str(Path(__file__).resolve()), "--traced-server"], demo, {TRACE_ENV: str(trace)})
    try:
        gc_client.json = types.SimpleNamespace(**{k: getattr(real_json, k) for k in dir(real_json) if not k.startswith("__")})
        gc_client.json.loads = loads
        _trace_library(mark)
        client = Client(url, verbose=False)
        cold: dict = {}
        app_ttft_iterated(client, cold)  # the first answer after start
        for _ in range(2):
            app_ttft_iterated(client)
            library_ttft(engine, settings)
        app_runs, polled_runs, lib_runs = [], [], []
        for _ in range(reps):
            time.sleep(0.2)
            marks: dict = {}
            app_ttft_iterated(client, marks)
            app_runs.append(marks)
            time.sleep(0.2)
            marks = {}
            app_ttft_polled(client, marks)
            polled_runs.append(marks)
            time.sleep(0.2)
            marks = {}
            start = len(local)
            library_ttft(engine, settings, marks)
            marks["generation_started"] = next(t for t, tag in local[start:] if tag == "generation_started")
            marks["first_text"] = next(t for t, tag in local[start:] if tag == "first_text")
            lib_runs.append(marks)
        client.close()
    finally:
        gc_client.json = real_json
        for owner, name, original in saved:
            setattr(owner, name, original)
        stop_app(proc)

    server = [(float(t), tag) for t, tag in (line.split() for line in trace.read_text().splitlines())]
    events = sorted(server + [(t, tag) for t, tag in local if tag == "text_parsed"])
    names = ["client_request", "gradio_to_handler", "app_setup", "model", "server_out", "sse_delivery", "client_read"]

    def app_stages(run: dict, end: float) -> dict:
        def first(tag):
            return next(t for t, g in events if g == tag and run["submit"] <= t < end)

        t = [run["submit"], first("join_received"), first("chat_entered"), first("generation_started"),
             first("first_text"), first("text_sent"), first("text_parsed"), run["piece"]]
        out = {name: b - a for name, a, b in zip(names, t, t[1:])}
        out["total"] = t[-1] - t[0]
        out["outside_model"] = out["total"] - out["model"]
        return out

    def medians(app_like: list[dict]) -> dict:
        submits = sorted(m["submit"] for m in app_runs + polled_runs) + [float("inf")]
        runs = [app_stages(m, submits[submits.index(m["submit"]) + 1]) for m in app_like]
        return {k: med_ms([r[k] for r in runs]) for k in runs[0]}

    lib = {"setup": [m["generation_started"] - m["call"] for m in lib_runs],
           "model": [m["first_text"] - m["generation_started"] for m in lib_runs],
           "handoff": [m["piece"] - m["first_text"] for m in lib_runs],
           "total": [m["piece"] - m["call"] for m in lib_runs]}
    lib["outside_model"] = [t - m for t, m in zip(lib["total"], lib["model"])]
    app_ms, polled_ms, lib_ms = medians(app_runs), medians(polled_runs), {k: med_ms(v) for k, v in lib.items()}
    return {"app_iterating_ms": app_ms, "app_polling_outputs_ms": polled_ms, "library_ms": lib_ms,
            "added_outside_model_ms": {"iterating": round(app_ms["outside_model"] - lib_ms["outside_model"], 1),
                                       "polling_outputs": round(polled_ms["outside_model"] - lib_ms["outside_model"], 1)},
            "first_request_after_start_ms": {k: round(v * 1000, 1) for k, v in app_stages(cold, min(m["submit"] for m in app_runs)).items()},
            "reps": reps, "gradio_client_new_http_client_ms": new_http_client_ms()}


def new_http_client_ms(n: int = 9) -> float:
    """What gradio_client pays on every request: `Client.send_data` calls `httpx.post`, which builds a
    fresh `httpx.Client`, and with it an SSL context loading the CA bundle, even for an http:// URL."""
    import httpx

    times = []
    for _ in range(n):
        t0 = clock()
        httpx.Client().close()
        times.append(clock() - t0)
    return med_ms(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "app_latency.json")
    args = parser.parse_args()

    import torch
    from gradio_client import Client

    from steering.config import GenerationSettings
    from steering.engine import Engine
    from steering.service.demo import DemoService

    settings = GenerationSettings(max_new_tokens=TOKENS, temperature=0.0, repetition_penalty=1.0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo.yaml"
        demo.write_text((ROOT / "demo.yaml").read_text().replace("./saes/", str(ROOT / "saes") + "/"))
        started = clock()
        proc, url = launch(["app.py"], demo)
        startup_s = clock() - started
        try:
            mem_start = memory_mib(proc.pid)
            client = Client(url, verbose=False)
            first_request_s = app_ttft_iterated(client)
            mem_first = memory_mib(proc.pid)
            engine = Engine.from_config(ROOT / "demo.yaml", log=lambda m: None)  # no batching: the library alone
            for _ in range(2):  # warm-up
                app_ttft_iterated(client)
                app_ttft_polled(client)
                library_ttft(engine, settings)
            runs = interleaved_ttft(client, engine, settings, args.reps)
            memory = concurrent_memory(proc.pid, url)
            client.predict(PROMPT, 10, api_name="/inspect")  # the inspector's SAE loads on first use
            mem_inspect = memory_mib(proc.pid)
            client.close()
        finally:
            stop_app(proc)

        service = DemoService(engine)
        ids = engine.encode([{"role": "user", "content": PROMPT}])
        service.inspect(PROMPT)
        forward, inspect = [], []
        for _ in range(5):
            t0 = clock()
            with torch.inference_mode():
                engine.model(input_ids=ids)
            forward.append(clock() - t0)
            t0 = clock()
            service.inspect(PROMPT)
            inspect.append(clock() - t0)

        breakdown = traced_breakdown(demo, engine, settings, args.reps)

    cfg = engine.model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_per_token = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * 4  # fp32 K and V, every layer
    prompt_tokens = int(ids.shape[-1])
    weights_mib = sum(p.numel() * p.element_size() for p in engine.model.parameters()) / 2**20
    med = statistics.median
    app, app_polled, lib, lib_woken = (med(runs[k]) for k in ("app_iterated", "app_polled", "library", "library_beside_1ms_sleeper"))
    result = {
        "command": "python benchmarks/app_latency.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "startup_s": round(startup_s, 2),
        "ttft_s": {"app": round(app, 4), "library": round(lib, 4), "library_beside_1ms_sleeper": round(lib_woken, 4),
                   "app_polling_outputs": round(app_polled, 4), "first_request_after_start": round(first_request_s, 4)},
        # the app's time before the first token outside the model's computation, less the library's (traced runs)
        "ttft_added_by_app_ms": breakdown["added_outside_model_ms"]["iterating"],
        "ttft_added_by_app_polling_outputs_ms": breakdown["added_outside_model_ms"]["polling_outputs"],
        # differences of the direct medians: on a loaded virtual machine torch's speed differs between processes
        "ttft_direct_differences_ms": {"app_minus_library": round((app - lib) * 1000, 1),
                                       "app_minus_library_beside_1ms_sleeper": round((app - lib_woken) * 1000, 1),
                                       "app_polling_outputs_minus_library": round((app_polled - lib) * 1000, 1)},
        "ttft_runs_ms": {k: [round(x * 1000) for x in v] for k, v in runs.items()},
        "ttft_breakdown": breakdown,
        "inspector_s": round(med(inspect), 4), "plain_forward_s": round(med(forward), 4),
        "inspector_to_forward": round(med(inspect) / med(forward), 3),
        "server_memory_mib": {
            "after_start": mem_start, "after_first_chat": mem_first, "after_first_inspect": mem_inspect,
            "concurrent_chats": memory,
            "model_weights": round(weights_mib, 1),
            "kv_cache_per_session_estimate": round(kv_per_token * (prompt_tokens + MEMORY_TOKENS) / 2**20, 2),
        },
        "settings": {"prompt": PROMPT, "max_new_tokens": TOKENS, "memory_max_new_tokens": MEMORY_TOKENS, "reps": args.reps},
        "targets": {"ttft_added_by_app_ms": "<= 150", "startup_s": "< 15", "inspector_to_forward": "<= 1.3"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--traced-server"]:
        serve_traced()
    else:
        raise SystemExit(main())
