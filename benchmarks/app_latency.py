"""The app's own costs on the embedded default: startup, time to first token, inspector, memory.

`python benchmarks/app_latency.py` starts `python app.py` (demo.yaml, model already cached) on a
loopback port and measures, as medians of several repetitions in one run:
- startup: from launching the process to the page answering;
- time to first token: through `gradio_client` (/chat), and calling the library directly in this
  process (`Steerer.stream`), same prompt and settings: the difference is what the app adds;
- inspector: `DemoService.inspect` against one plain forward pass over the same prompt, in process;
- memory: the server's resident memory after start, and after 4 concurrent chats.
Results go to benchmarks/results/app_latency.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradio_client import Client  # noqa: E402

from steering.config import GenerationSettings  # noqa: E402
from steering.service import DemoService  # noqa: E402
from steering.session import Steerer  # noqa: E402
from tests.helpers import start_app, stop_app  # noqa: E402

PROMPT = "Tell me about your weekend plans."
REPS = 5


def first_piece_seconds(iterator) -> float:
    started = time.perf_counter()
    for piece in iterator:
        if piece:
            return time.perf_counter() - started
    raise RuntimeError("no output")


def main() -> int:
    settings = GenerationSettings(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo.yaml"
        demo.write_text((ROOT / "demo.yaml").read_text().replace("./saes/", str(ROOT / "saes") + "/"))
        started = time.perf_counter()
        proc, url, _ = start_app(demo)
        startup_s = time.perf_counter() - started
        try:
            server = psutil.Process(proc.pid)
            rss_start = server.memory_info().rss / 2**20
            client = Client(url, verbose=False)
            api_args = (PROMPT, None, None, "own", None, settings.max_new_tokens, 0.0)
            client.predict(*api_args, api_name="/chat")  # warm-up
            app_ttft = [first_piece_seconds(client.submit(*api_args, api_name="/chat")) for _ in range(REPS)]

            threads = [threading.Thread(target=lambda: Client(url, verbose=False).predict(*api_args, api_name="/chat")) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rss_sessions = server.memory_info().rss / 2**20
        finally:
            stop_app(proc)

    steerer = Steerer.from_config(ROOT / "demo.yaml", log=lambda m: None)
    service = DemoService(steerer)
    "".join(steerer.stream(PROMPT, settings=settings))  # warm-up
    lib_ttft = [first_piece_seconds(steerer.stream(PROMPT, settings=settings)) for _ in range(REPS)]
    ids = steerer.encode([{"role": "user", "content": PROMPT}])
    service.inspect(PROMPT)
    forward, inspect = [], []
    for _ in range(REPS):
        t0 = time.perf_counter()
        with torch.inference_mode():
            steerer.model(input_ids=ids)
        forward.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        service.inspect(PROMPT)
        inspect.append(time.perf_counter() - t0)

    med = statistics.median
    result = {
        "command": "python benchmarks/app_latency.py",
        "startup_s": round(startup_s, 2),
        "ttft_s": {"app": round(med(app_ttft), 4), "library": round(med(lib_ttft), 4)},
        "ttft_added_by_app_ms": round((med(app_ttft) - med(lib_ttft)) * 1000, 1),
        "inspector_s": round(med(inspect), 4), "plain_forward_s": round(med(forward), 4),
        "inspector_to_forward": round(med(inspect) / med(forward), 3),
        "server_rss_mib": {"after_start": round(rss_start, 1), "after_4_concurrent_chats": round(rss_sessions, 1)},
        "targets": {"ttft_added_by_app_ms": "<= 150", "startup_s": "< 15", "inspector_to_forward": "<= 1.3"},
    }
    out = ROOT / "benchmarks" / "results" / "app_latency.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
