"""Run the app for real in the `spaces` package's ZeroGPU mode on a GPU machine, and measure what it costs.

ZeroGPU needs CUDA (each `@spaces.GPU` call forks a worker that initialises the GPU), so this runs
only where one is at hand, with a CUDA build of torch. It starts the device API stub beside it,
then serves the app twice, as a plain process and in ZeroGPU mode, and in each drives every
named endpoint through `gradio_client` and the page's events (send, Stop, inspector, "Steer with
this feature", reset, concept search) through Chromium. It writes latencies, the ZeroGPU overhead
per call (median there minus median plain) and any page errors to `--out`.

    python tools/zerogpu/run_on_gpu.py --out benchmarks/results/zerogpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stub_device_api import DeviceAPI, serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = "Tell me about football."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict, log: Path, timeout_s: float = 600) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full = {**os.environ, "PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the app did not start; its log:\n{log.read_text()[-3000:]}")


def time_endpoints(url: str, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each named endpoint; for /chat also the time to its first streamed piece."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    calls = {
        "inspect": lambda: client.predict(MESSAGE, 10, api_name="/inspect"),
        "differential": lambda: client.predict("I love football.\nGoal!", "The weather is mild.\nA quiet day.", 10, api_name="/differential"),
        "scan": lambda: client.predict("I love football.\nGoal!", 5, api_name="/scan"),
        "concept_search": lambda: client.predict("the ocean", 10, api_name="/concept_search"),
        "status": lambda: client.predict(api_name="/status"),
    }
    times: dict[str, list[float]] = {name: [] for name in [*calls, "chat", "chat_first_piece"]}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        job = client.submit(MESSAGE, [], None, "own", None, 32, 0.0, None, None, 0, api_name="/chat")
        first = None
        for _piece in job:
            first = first or time.perf_counter() - start
        times["chat"].append(time.perf_counter() - start)
        times["chat_first_piece"].append(first or float("nan"))
    return times


def drive_page(url: str) -> list[str]:
    """Every event of the page, as a visitor causes it; returns the page's error toasts and console errors."""
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("STEERING_CHROMIUM", "/usr/bin/chromium"),
                                    args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.goto(url)
        expect(page.locator("#strength-0 input[type=number]")).to_be_visible(timeout=120_000)
        page.fill("#message textarea", MESSAGE)
        page.click("#send")
        expect(page.locator("#steered-chat")).to_contain_text(MESSAGE, timeout=120_000)
        page.wait_for_timeout(1500)
        page.click("#stop")
        expect(page.locator("#top-features")).to_contain_text("", timeout=120_000)
        page.fill("#picked-feature input[type=number]", "7")
        page.click("#steer-with")
        page.wait_for_timeout(3000)
        page.click("#reset")
        page.wait_for_timeout(2000)
        page.click("button[role=tab]:has-text('Inspector')")
        page.fill("#concept textarea, #concept input", "the ocean")
        page.keyboard.press("Enter")
        page.wait_for_timeout(20_000)
        problems += [f"toast: {t}" for t in page.locator(".toast-body").all_inner_texts() if "error" in t.lower()]
        browser.close()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--config", default="demo.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/zerogpu.json")
    parser.add_argument("--modes", default="plain,zerogpu", help="plain alone runs anywhere (a check of this script)")
    args = parser.parse_args()
    wanted = args.modes.split(",")
    gpu_uuid = "none"
    if "zerogpu" in wanted:
        gpu_uuid = subprocess.check_output(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"], text=True).split()[0]
    logs = args.out.parent / "zerogpu-logs"
    logs.mkdir(parents=True, exist_ok=True)
    api_port = free_port()
    server = serve(DeviceAPI(gpu_uuid, logs / "device-api.jsonl"), api_port)
    base = {"STEERING_CONFIG": args.config}
    modes = {"plain": base, "zerogpu": {**base, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": f"http://127.0.0.1:{api_port}"}}
    result: dict = {"gpu": gpu_uuid, "rounds": args.rounds, "modes": {}}
    for mode, env in modes.items():
        if mode not in wanted:
            continue
        proc, url = start_app(env, logs / f"app-{mode}.log")
        try:
            times = time_endpoints(url, args.rounds)
            problems = drive_page(url)
        finally:
            proc.terminate()
            proc.wait(30)
        result["modes"][mode] = {"median_s": {k: statistics.median(v) for k, v in times.items()}, "all_s": times,
                                 "page_problems": problems}
    if len(result["modes"]) == 2:
        plain, zero = result["modes"]["plain"]["median_s"], result["modes"]["zerogpu"]["median_s"]
        result["zerogpu_overhead_s"] = {k: zero[k] - plain[k] for k in plain}
    server.shutdown()
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"overhead_s": result.get("zerogpu_overhead_s"),
                      "problems": {m: r["page_problems"] for m, r in result["modes"].items()}}, indent=2))


if __name__ == "__main__":
    main()
