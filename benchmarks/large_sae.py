"""Extracting steering vectors from a headline-size SAE reads rows, not matrices.

`python benchmarks/large_sae.py` writes a dictionary_learning `ae.pt` of the andyrdt size
(131072 features x 4096 dims, fp32: 2 GiB per matrix, 4 GiB in all) to a temporary folder. It
then times, each in a fresh process so its peak resident memory is its own:
- extract: `open_sae(folder).decoder_rows(8 indices)` plus their encoder rows (what
  `python -m steering.cli.extract` does);
- full load: `torch.load(ae.pt, weights_only=True)`, which is what a loader without lazy reads
  does.
Both run with the file in the page cache (written just before), which favours the full load.
Results go to benchmarks/results/large_sae.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INDICES = [3, 21576, 40788, 65536, 74457, 93, 111898, 131071]

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from steering.sae import open_sae
folder, what = sys.argv[2], sys.argv[3]
indices = json.loads(sys.argv[4])
t0 = time.perf_counter()
if what == "extract":
    handle = open_sae(folder)
    rows = handle.decoder_rows(indices)
    rules = handle.feature_rules(indices)
    ok = rows.shape == (len(indices), 4096) and float(rows[0, 0]) == float(indices[0] % 997)
else:
    state = torch.load(f"{folder}/ae.pt", weights_only=True, map_location="cpu")
    ok = state["decoder.weight"].shape == (4096, 131072)
seconds = time.perf_counter() - t0
# VmHWM is this process's own peak (ru_maxrss would carry the parent's peak across exec)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss_mib": hwm / 1024, "ok": ok}))
"""


def write_sae(folder: Path, d: int, f: int) -> float:
    import torch

    folder.mkdir(parents=True)
    dec = torch.zeros(d, f)
    enc = torch.zeros(f, d)
    for i in INDICES:  # recognisable values at the picked features
        dec[:, i] = float(i % 997)
        enc[i, :] = float(i % 997)
    state = {"encoder.weight": enc, "encoder.bias": torch.zeros(f), "decoder.weight": dec, "b_dec": torch.zeros(d),
             "k": torch.tensor(64), "threshold": torch.tensor(0.5)}
    torch.save(state, folder / "ae.pt")
    (folder / "config.json").write_text(json.dumps({"trainer": {"activation_dim": d, "dict_size": f, "k": 64, "layer": 15,
                                                                "lm_name": "meta-llama/Llama-3.1-8B-Instruct", "dict_class": "BatchTopKSAE"}}))
    return (folder / "ae.pt").stat().st_size / 2**30


def run(folder: Path, what: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(folder), what, json.dumps(INDICES)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "large_sae.json"))
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="steering-large-sae-"))
    try:
        gib = write_sae(tmp / "sae", 4096, 131072)
        results = {"extract": [], "full load": []}
        for _ in range(args.reps):
            for what in results:
                results[what].append(run(tmp / "sae", "extract" if what == "extract" else "full"))
        assert all(r["ok"] for rs in results.values() for r in rs)
        summary = {what: {"median_s": round(statistics.median(r["seconds"] for r in rs), 4),
                          "peak_rss_mib": round(max(r["peak_rss_mib"] for r in rs), 1)} for what, rs in results.items()}
        ratio = summary["extract"]["median_s"] / summary["full load"]["median_s"]
        result = {"command": "python benchmarks/large_sae.py", "file_gib": round(gib, 2), "features_extracted": len(INDICES),
                  "reps": args.reps, "summary": summary, "extract_time_fraction_of_full_load": round(ratio, 5), "target": "< 0.01"}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
