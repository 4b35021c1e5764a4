"""Shared fixtures (the real embedded model, converted once per machine; a tiny random Llama; the launched
app) and the test tiers, marked by directory:

- tests/unit/: fast and model-free (no real SmolLM2, no app): `python3 -m pytest tests/unit`;
- tests/integration/: the real model, marked `integration` and `slow`;
- tests/app/: the launched app.py (gradio_client, the browser), marked `app` and `slow`; the Playwright
  test also `browser`.

`python3 -m pytest -m "not integration and not app"` (or `-m "not slow"`) is the fast tier too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

if os.environ.get("STEERING_TEST_BACKEND") == "toy":  # the app tests on tests/toy_backend.py
    import tests.toy_backend  # noqa: F401  registers backend: toy for the engines they compare the app with


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Under `-n 2` (the README's test command) each worker computes on its share of the cores: two workers of two
    # threads each on two cores spend their time waiting on each other's threads (a sweep took 5 times as long).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


# tests/vllm runs only inside .venv-vllm, in the background process of tests/background_suite.py.
collect_ignore = [] if os.environ.get("STEERING_VLLM_SUITE") == "1" else ["vllm"]


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (model, tokenizer), fetched and converted on first use."""
    from steering.model.embedded import EMBEDDED_MODEL
    from steering.model.loading import load_model

    return load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_llama():
    """A randomly initialised 4-layer Llama (width 32): fast, for exact hook checks."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    return model


def write_test_demo(folder, features=None, **extra):
    """A demo.yaml on the real embedded model with a test-written SAE (random directions) at layer 15."""
    import yaml

    from tests.helpers import random_sae, write_sae

    write_sae(folder / "sae" / "layer_15", random_sae(576, 256, "jumprelu", seed=11, layer=15))
    data = {
        "model": "embedded:smollm2-135m-instruct",
        "sae": {"source": "./sae", "format": "saelens", "path": "layer_{layer}"},
        "features": features if features is not None else [
            {"layer": 15, "index": 3, "strength": 0.0, "label": "test direction A"},
            {"layer": 15, "index": 4, "strength": 0.0, "label": "test direction B", "mode": "clamp"},
        ],
        "generation": {"max_new_tokens": 24, "temperature": 0.0, "top_p": 0.9, "repetition_penalty": 1.0, "seed": 0},
        "inspector_layer": 15,
        **extra,
    }
    (folder / "demo.yaml").write_text(yaml.safe_dump(data))
    return folder / "demo.yaml"


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`python app.py` on a free loopback port, serving the test demo; yields its URL."""
    import os

    from tests.helpers import start_app, stop_app

    demo = write_test_demo(tmp_path_factory.mktemp("app"))
    proc, url, _ = start_app(demo, {"HF_TOKEN": os.environ.get("HF_TOKEN", "hf_secret_test_value")})
    yield url
    stop_app(proc)


TESTS = Path(__file__).resolve().parent
TIER_MARKS = {"unit": (), "integration": ("integration", "slow"), "app": ("app", "slow")}
HEAVY_FIXTURES = {"smollm2", "app_server"}  # what the unit tier must not use


def pytest_collection_modifyitems(config, items):
    """Mark each test by its tier directory; refuse a unit test that loads the real model or the app."""
    misplaced = []
    for item in items:
        try:
            parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        except ValueError:
            continue
        tier = parts[0] if len(parts) > 1 else None
        for name in TIER_MARKS.get(tier, ()):
            item.add_marker(name)
        if tier == "app" and parts[-1] == "test_browser.py":
            item.add_marker("browser")
        if tier == "unit" and HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            misplaced.append(f"{item.nodeid} uses {sorted(HEAVY_FIXTURES & set(item.fixturenames))}")
    if misplaced:
        raise pytest.UsageError("tests/unit must stay model-free; move these to tests/integration or tests/app:\n  "
                                + "\n  ".join(misplaced))
    from tests.background_suite import NODE

    items.sort(key=lambda item: item.nodeid == NODE)  # stable: the vLLM suite's wait comes last


def _runs_the_suite(config) -> bool:
    """The run's own process: not an xdist worker, nor the vLLM suite's process (which loads this file too)."""
    return not hasattr(config, "workerinput") and os.environ.get("STEERING_VLLM_SUITE") != "1"


def pytest_configure(config):
    if _runs_the_suite(config):
        from tests.background_suite import forget_last_run

        forget_last_run()


def pytest_collection_finish(session):
    if not _runs_the_suite(session.config):  # under xdist the scheduling process starts it, once
        return
    from tests.background_suite import start_if_selected

    start_if_selected(session.config, {item.nodeid for item in session.items})


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under pytest-xdist (`-n 2`): the scheduling process starts the vLLM suite once a worker has collected."""
    from tests.background_suite import start_if_selected

    start_if_selected(node.config, set(ids))


def pytest_unconfigure(config):
    from tests.background_suite import stop_if_started

    stop_if_started(config)
