"""Ship recommendations: `python -m steering.offline.calibrate_features demo.yaml [--features L15:8241,...]`.

Runs the calibration sweep (`steering.inspection.calibrate`) for each configured feature (or those named) on the
config's own model and SAE, and writes them into the SAE folder of each layer as `calibration.json`
({"L15:8241": {...}}), which the app reads before its cache: a visitor who adds one of these features starts at its
recommended mode and strength, and its card says it, with no sweep on the Space. Features already in the file
are kept unless `--again`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from steering.engine import Engine
from steering.inspection.calibrate import calibrate, feature_words
from steering.inspection.feature_info import load_feature_info
from steering.keys import FeatureKey


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--features", default=None, help="comma-separated keys (default: the config's features)")
    p.add_argument("--again", action="store_true", help="sweep features the file already holds")
    args = p.parse_args(argv)
    with Engine.from_config(args.config, device="cpu", dtype="float32") as engine:
        info = load_feature_info(engine.config)
        if info is None:
            raise SystemExit("the config's SAE folders ship no feature data (labels, cards): nothing to read words from")
        keys = ([FeatureKey.parse(k) for k in args.features.split(",")] if args.features
                else [f.key for f in engine.features])
        for key in keys:
            folder = info.folders.get(key.layer)
            if folder is None:
                raise SystemExit(f"{key}: no local SAE folder with feature data at layer {key.layer}")
            path = Path(folder) / "calibration.json"
            shipped = json.loads(path.read_text()) if path.is_file() else {}
            if str(key) in shipped and not args.again:
                print(f"{key}: kept ({path})")
                continue
            card = info.card(key.layer, key.index) or {}
            words = feature_words(card.get("label"), card.get("says") or [])
            t0 = time.time()
            c = calibrate(engine, key.layer, key.index, words)
            shipped[str(key)] = c.to_dict()
            path.write_text(json.dumps(shipped, indent=1, sort_keys=True) + "\n")
            print(f"{key}: {c.summary()} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
