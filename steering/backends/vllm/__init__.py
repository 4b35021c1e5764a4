"""`backend: vllm`: the backend (`backend`), vLLM's engine on a thread of this process with its decoder
(`engine`), the inspector's reads from the engine's own forward (`capture`), and our worker extension in its
workers (`worker`). vLLM itself is imported only when one is started."""
