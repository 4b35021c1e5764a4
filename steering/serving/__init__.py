"""Front-ends over an `Engine`: the OpenAI-compatible API (`openai_api`, requests parsed by `openai_request`), the
engine's own operations for remote apps (`engine_api`), and the tensor codec they share with that client (`wire`)."""
