"""Where the weights live and how a batch of requests is generated and steered there: transformers in this
process steered by hooks (`hooks`) or by nnsight (`nnsight`), vLLM (`vllm/`), remote steering servers (`remote`)."""


def open_served_model(config):
    """(model stand-in, tokenizer) for `backend: vllm` or `backend: remote`."""
    if config.backend == "vllm":
        from steering.backends.vllm.backend import open_vllm_model

        return open_vllm_model(config)
    from steering.backends.remote import open_remote_model

    return open_remote_model(config)
