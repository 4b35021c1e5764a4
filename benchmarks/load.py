"""Load: many visitors at once on the app, many OpenAI clients at once on the vLLM server, and what each sees when
the waiting line is full. `python benchmarks/load.py [--part app|vllm|all] [--visitors 32] [--clients 64]`.

- app: `python app.py` on demo.yaml (batching on, the default STEERING_CONCURRENCY) and `--visitors` gradio_client
  visitors who send their chats at the same moment through `/chat` (streamed), `--chats` each. Time to first token
  (the first streamed text), answer tokens (the answer re-tokenized), tokens/s over the whole run, errors.
  Then the same app with a short line (STEERING_MAX_QUEUE=4, STEERING_CONCURRENCY=2) and 16 visitors at once:
  how many are turned away, how fast, and with what message; every other chat must be answered.
- vllm: `.venv-vllm/bin/python -m steering.serve` on a `backend: vllm` copy of demo.yaml (`max_num_seqs` =
  `--clients`), `--clients` OpenAI clients at once (streamed `/v1/chat/completions`, httpx): the same figures.
  Then `1.5 x --clients` at once against its `--max-requests` (= `--clients`): the extra ones get 429 with
  Retry-After, at once, and the others are answered.

Writes benchmarks/results/load.json. Answers are short (`--tokens`, 32) so a run fits a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, start_app, stop_app  # noqa: E402  (launched as the app tests launch it)

PROMPTS = ["Tell me about your weekend.", "How do I fix a squeaky door?", "Write a short note to a neighbour.",
           "What makes a good breakfast?", "Describe a busy train station.", "How can I sleep better?",
           "Give me tips for a job interview.", "What is a good hobby to start?"]


def tokenizer():
    from transformers import AutoTokenizer

    from steering.model.embedded import EMBEDDED_MODEL
    from steering.model.loading import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_MODEL))


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))], 3)


def figures(rows: list[dict], wall_s: float, tok) -> dict:
    done = [r for r in rows if r.get("error") is None]
    tokens = [len(tok(r["text"], add_special_tokens=False).input_ids) for r in done]
    ttft = [r["ttft_s"] for r in done if r.get("ttft_s") is not None]
    return {"requests": len(rows), "answered": len(done), "errors": [r["error"] for r in rows if r.get("error")],
            "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95), "ttft_max_s": pct(ttft, 100),
            "answer_tokens_total": sum(tokens), "answer_tokens_median": statistics.median(tokens) if tokens else 0,
            "wall_s": round(wall_s, 1), "tokens_per_s": round(sum(tokens) / wall_s, 2) if wall_s else None}


def at_once(n: int, fn) -> tuple[list[dict], float]:
    barrier = threading.Barrier(n)

    def run(i: int) -> dict:
        barrier.wait(600)
        return fn(i)

    t0 = time.time()
    with ThreadPoolExecutor(n) as pool:
        rows = list(pool.map(run, range(n)))
    return rows, time.time() - t0


# ---- the app -------------------------------------------------------------------------------------------------

def app_chat(client, i: int, tokens: int) -> dict:
    t0, first, text = time.time(), None, ""
    try:
        job = client.submit(PROMPTS[i % len(PROMPTS)], None, None, "own", None, tokens, 0.7, 0.9, 1.1, i, api_name="/chat")
        while not job.done():
            outs = job.outputs()
            if first is None and outs and outs[-1]:
                first = time.time() - t0
            time.sleep(0.02)
        text = job.result()
        if first is None and text:
            first = time.time() - t0
        return {"ttft_s": first, "text": text, "seconds": time.time() - t0, "error": None}
    except Exception as exc:  # counted, not raised
        return {"ttft_s": None, "text": text, "seconds": time.time() - t0, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def app_part(args, tok) -> dict:
    from gradio_client import Client

    out = {}
    proc, url, log = start_app(ROOT / "demo.yaml", timeout_s=1800, log_path=Path(tempfile.mkdtemp()) / "app.log")
    try:
        clients = [Client(url, verbose=False) for _ in range(args.visitors)]
        app_chat(clients[0], 0, 4)  # warm-up, not counted
        rows, wall = at_once(args.visitors, lambda i: [app_chat(clients[i], i * args.chats + k, args.tokens)
                                                        for k in range(args.chats)])
        out["visitors"] = {"visitors": args.visitors, "chats_each": args.chats, "tokens_asked": args.tokens,
                           "concurrency": int(os.environ.get("STEERING_CONCURRENCY", "4")),
                           **figures([r for chats in rows for r in chats], wall, tok)}
    finally:
        stop_app(proc)
    proc, url, log = start_app(ROOT / "demo.yaml", {"STEERING_MAX_QUEUE": "4", "STEERING_CONCURRENCY": "2"},
                               timeout_s=1800, log_path=Path(tempfile.mkdtemp()) / "app.log")
    try:
        clients = [Client(url, verbose=False) for _ in range(16)]
        app_chat(clients[0], 0, 4)
        rows, wall = at_once(16, lambda i: app_chat(clients[i], i, args.tokens))
        busy = [r for r in rows if r["error"] and "busy" in r["error"]]
        out["full_line"] = {"visitors": 16, "max_queue": 4, "concurrency": 2, "turned_away": len(busy),
                            "turned_away_within_s": round(max((r["seconds"] for r in busy), default=0), 2),
                            "message": busy[0]["error"] if busy else None,
                            "answered": sum(r["error"] is None and bool(r["text"]) for r in rows),
                            "other_errors": [r["error"] for r in rows if r["error"] and "busy" not in r["error"]],
                            "wall_s": round(wall, 1)}
        out["app_log_has_traceback"] = "Traceback" in log.read_text()
    finally:
        stop_app(proc)
    return out


# ---- the vLLM server -----------------------------------------------------------------------------------------

def openai_chat(url: str, i: int, tokens: int) -> dict:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], "stream": True,
            "max_tokens": tokens, "temperature": 0.7, "seed": i}
    t0, first, pieces = time.time(), None, []
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=1800) as r:
            if r.status_code != 200:
                r.read()
                return {"ttft_s": None, "text": "", "seconds": time.time() - t0, "status": r.status_code,
                        "retry_after": r.headers.get("retry-after"), "error": f"HTTP {r.status_code}: {r.text[:200]}"}
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                piece = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if piece and first is None:
                    first = time.time() - t0
                pieces.append(piece)
        return {"ttft_s": first, "text": "".join(pieces), "seconds": time.time() - t0, "status": 200, "error": None}
    except Exception as exc:
        return {"ttft_s": None, "text": "", "seconds": time.time() - t0, "status": None,
                "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def vllm_part(args, tok) -> dict:
    import yaml

    folder = Path(tempfile.mkdtemp())
    data = yaml.safe_load((ROOT / "demo.yaml").read_text())
    data |= {"backend": "vllm", "device": "cpu", "dtype": "float32",
             "vllm": {"max_model_len": 1024, "max_num_seqs": args.clients, "kv_cache_gib": 1},
             "vectors": str(ROOT / data.get("vectors", "steering_vectors.pt"))}
    data["sae"]["source"] = str(ROOT / data["sae"]["source"])
    config = folder / "vllm.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([str(ROOT / ".venv-vllm" / "bin" / "python"), "-m", "steering.serve", str(config), "--port",
                             str(port), "--max-requests", str(args.clients)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 1800
        while True:
            assert proc.poll() is None and time.time() < deadline, (folder / "server.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        openai_chat(url, 0, 4)  # warm-up
        rows, wall = at_once(args.clients, lambda i: openai_chat(url, i, args.tokens))
        out = {"clients": {"clients": args.clients, "tokens_asked": args.tokens, "max_num_seqs": args.clients,
                           **figures(rows, wall, tok)}}
        n = args.clients * 3 // 2
        rows, wall = at_once(n, lambda i: openai_chat(url, i, args.tokens))
        refused = [r for r in rows if r["status"] == 429]
        out["full"] = {"clients": n, "max_requests": args.clients, "refused_429": len(refused),
                       "refused_within_s": round(max((r["seconds"] for r in refused), default=0), 2),
                       "retry_after": sorted({r["retry_after"] for r in refused}),
                       "message": refused[0]["error"] if refused else None,
                       "answered": sum(r["status"] == 200 and bool(r["text"]) for r in rows),
                       "other_errors": [r["error"] for r in rows if r["error"] and r["status"] != 429],
                       "wall_s": round(wall, 1)}
        return out
    finally:
        stop_app(proc)  # the server, as the app: terminate, then kill
        log.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["app", "vllm", "all"], default="all")
    p.add_argument("--visitors", type=int, default=32)
    p.add_argument("--chats", type=int, default=2, help="chats per app visitor, one after another")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.json"))
    args = p.parse_args()
    tok = tokenizer()
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result["machine"] = f"{os.cpu_count()} CPU cores, shared"
    if args.part in ("app", "all"):
        result["app"] = app_part(args, tok)
    if args.part in ("vllm", "all"):
        result["vllm"] = vllm_part(args, tok)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    bad = [part.get(k, {}).get("errors") or part.get(k, {}).get("other_errors")
           for part in (result.get("app", {}), result.get("vllm", {})) for k in part if isinstance(part.get(k), dict)]
    return 1 if any(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
