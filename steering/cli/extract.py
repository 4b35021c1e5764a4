"""`python -m steering.cli.extract [demo.yaml] [--out FILE]`: write the config's steering vectors."""

from __future__ import annotations

import argparse

from steering.config import load_config
from steering.steer.vectors import extract_vectors, save_vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steering.cli.extract", description="Write steering_vectors.pt for a config's features, reading only their decoder rows.")
    parser.add_argument("config", nargs="?", default="demo.yaml", help="the demo config (default: demo.yaml)")
    parser.add_argument("--out", help="output file (default: the config's `vectors:` path)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    vectors = extract_vectors(config)
    path = save_vectors(vectors, args.out or config.vectors_path())
    print(f"wrote {len(vectors.vectors)} vector(s) to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
