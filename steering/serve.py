"""`python -m steering.serve [demo.yaml] [--host 0.0.0.0] [--port 8000]`: the OpenAI-compatible steering server.

With `backend: vllm` in the config the answers come from vLLM (run it with .venv-vllm/bin/python on CPU);
any other backend serves the same API from the transformers model. One engine per process; run several
processes (replicas) behind a router to scale out (docs/serving.md).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.serve", description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default="demo.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)

    import uvicorn

    from steering.engine import Engine
    from steering.serving.openai_api import create_app

    with Engine.from_config(args.config) as engine:
        uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
