"""`backend: vllm`: vLLM's engine in this process (`engine`), our worker extension in its workers (`worker`), and
the stand-in model the `Engine` reads (`backend`). vLLM itself is imported only when one is started."""
