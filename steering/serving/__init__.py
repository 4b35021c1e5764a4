"""Serving engines: steering inside vLLM (`vllm_engine`, `vllm_worker`, `vllm_model`), remote steering servers
(`remote_model`, served by `engine_api` beside the OpenAI API in `openai_api`), the plan as plain data (`payload`)."""


def open_served_model(config):
    """(model stand-in, tokenizer) for `backend: vllm` or `backend: remote`."""
    if config.backend == "vllm":
        from steering.serving.vllm_model import open_vllm_model

        return open_vllm_model(config)
    from steering.serving.remote_model import open_remote_model

    return open_remote_model(config)
