"""Where the weights live, behind one interface (`base.Backend`) that the `Engine` composes, picked by name from
`registry`: transformers in this process steered by hooks (`hooks`) or by nnsight (`nnsight`), vLLM (`vllm/`),
remote steering servers (`remote`). Nothing is imported here, so naming a backend loads none of them."""
