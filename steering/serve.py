"""`python -m steering.serve [demo.yaml] [--host 0.0.0.0] [--port 8000] [--api-key KEY] [--max-requests N]`: the
OpenAI-compatible steering server.

With `backend: vllm` in the config the answers come from vLLM (run it with .venv-vllm/bin/python on CPU);
any other backend serves the same API from the transformers model. One engine per process; run several
processes (replicas) behind a router to scale out (docs/serving.md). The API key comes from `--api-key` or,
better (a command line shows in the process list), from the environment variable STEERING_API_KEY.
"""

from __future__ import annotations

import argparse
import sys

from steering.serving.auth import API_KEY_ENV, key_from_env
from steering.serving.openai_api import MAX_REQUESTS


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.serve", description="The OpenAI-compatible steering server.")
    p.add_argument("config", nargs="?", default="demo.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help=f"require this key on every route but /health (default: ${API_KEY_ENV})")
    p.add_argument("--max-requests", type=int, default=MAX_REQUESTS,
                   help="answers in progress at once; past it a request gets 429 with Retry-After")
    args = p.parse_args(argv)
    key = args.api_key if args.api_key is not None else key_from_env()
    if args.api_key == "":
        p.error(f"--api-key is empty: pass a key, or leave the flag out (and {API_KEY_ENV} unset) to serve without one")
    if args.max_requests < 1:
        p.error(f"--max-requests {args.max_requests}: use 1 or more")
    if key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: no API key: anyone who can reach {args.host}:{args.port} can use this server. "
              f"Set {API_KEY_ENV} (or --api-key).", file=sys.stderr)

    import uvicorn

    from steering.engine import Engine
    from steering.serving.openai_api import create_app

    with Engine.from_config(args.config) as engine:
        uvicorn.run(create_app(engine, api_key=key, max_requests=args.max_requests), host=args.host, port=args.port,
                    log_level="warning")


if __name__ == "__main__":
    main()
