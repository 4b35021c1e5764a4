"""The embedded default model's cached fast path: how long `ensure_default_model()` takes once converted.

`python benchmarks/default_model_cache.py` writes benchmarks/results/default_model_cache.json:
- in_process_ms: the call in a process that has already imported steering (median of --repeat calls);
- fresh_process_ms: the call alone in a new Python process (imports not counted), median of
  --processes runs;
- gguf_imported: whether the fresh process imported gguf (the converter) on the way (it should not).

The behaviour (only the marker file read, no lock, no build) is tested in
tests/integration/test_embedded_model.py; this measures its cost, which the tests used to bound at 2 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steering.model.embedded import ensure_default_model  # noqa: E402

FRESH = (
    "import json, sys, time; from steering.model.embedded import ensure_default_model as e; "
    "t = time.perf_counter(); e(); print(json.dumps({'s': time.perf_counter() - t, 'gguf': 'gguf' in sys.modules}))"
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_model_cache.json"))
    args = parser.parse_args(argv)

    folder = ensure_default_model()  # converts on the very first run; not timed
    in_process = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ensure_default_model()
        in_process.append(time.perf_counter() - start)
    fresh = [json.loads(subprocess.run([sys.executable, "-c", FRESH], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1]) for _ in range(args.processes)]
    result = {
        "folder": folder.name,
        "in_process_ms": round(statistics.median(in_process) * 1000, 3),
        "fresh_process_ms": round(statistics.median(r["s"] for r in fresh) * 1000, 3),
        "gguf_imported": any(r["gguf"] for r in fresh),
        "repeat": args.repeat,
        "processes": args.processes,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
