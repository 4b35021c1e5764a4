"""Serving engines: steering inside vLLM (`vllm_engine`, `vllm_worker`), the plan as plain data (`payload`)."""
