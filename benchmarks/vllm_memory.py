"""Resident memory of the two backends, each in a fresh process (SmolLM2, float32, CPU):

    STEERING_VLLM_SUITE=1 .venv-vllm/bin/python benchmarks/vllm_memory.py

`hooks`: the RSS of a process holding the transformers model and engine; `vllm`: the RSS of this process
(tokenizer, SAE reader) plus vLLM's engine-core and worker processes (weights, 1 GiB KV cache). Both after
one short answer. Writes benchmarks/results/vllm_memory.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = r"""
import json, sys, psutil
from dataclasses import replace
from steering.config import VLLMSettings, load_config
from steering.engine import Engine
cfg = replace(load_config("demo.yaml"), device="cpu", dtype="float32")
if sys.argv[1] == "vllm":
    cfg = replace(cfg, backend="vllm", vllm=VLLMSettings(max_model_len=1024, kv_cache_gib=1))
engine = Engine.from_config(cfg)
engine.chat("Hi!", settings=replace(cfg.generation, max_new_tokens=8))
me = psutil.Process()
rss = {"this process": me.memory_info().rss, **{f"{c.name()} {c.pid}": c.memory_info().rss for c in me.children(recursive=True)}}
print(json.dumps({k: round(v / 2**20) for k, v in rss.items()}))
engine.close()
"""


def main() -> None:
    out = {}
    for backend in ("hooks", "vllm"):
        proc = subprocess.run([sys.executable, "-c", PROBE, backend], cwd=ROOT, capture_output=True, text=True, timeout=600)
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        assert line, proc.stderr[-2000:]
        mib = json.loads(line[-1])
        out[backend] = {"processes_mib": mib, "total_mib": sum(mib.values())}
        print(backend, out[backend], flush=True)
    path = ROOT / "benchmarks" / "results" / "vllm_memory.json"
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
