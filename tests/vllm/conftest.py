"""`backend: vllm`, run inside .venv-vllm (tools/install_vllm.sh) by tests/integration/test_vllm_suite.py.

The vLLM engine starts once for the whole run (about 35 s here) and serves every test; the transformers
backend, on the same config, is the reference.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker("integration")
        item.add_marker("slow")


@pytest.fixture(scope="session")
def configs():
    from steering.config import VLLMSettings, load_config

    base = load_config(ROOT / "demo.yaml")
    hf = replace(base, device="cpu", dtype="float32")
    served = replace(hf, backend="vllm", vllm=VLLMSettings(max_model_len=1024, kv_cache_gib=1, max_num_seqs=16))
    return hf, served


@pytest.fixture(scope="session")
def hf_engine(configs):
    from steering.engine import Engine

    with Engine.for_model(configs[0], *_load(configs[0]), _vectors(configs[0])) as engine:
        yield engine


def _load(config):
    from steering.model.loading import load_model

    return load_model(config.model_source(), device="cpu", dtype="float32")


def _vectors(config):
    from steering.steer.vectors import vectors_for_config

    return vectors_for_config(config, d_model=576)


@pytest.fixture(scope="session")
def app_service(configs, tmp_path_factory):
    """The app's service (`open_service`, as `app.main` builds it) on a `backend: vllm` copy of demo.yaml: its
    engine is the suite's one vLLM engine."""
    import yaml

    from steering.service.start import open_service

    served = configs[1]
    data = served.to_dict()
    data["sae"]["source"] = served.sae_source()  # absolute: the copy lives elsewhere
    data["vectors"] = str(served.vectors_path())
    path = tmp_path_factory.mktemp("vllm") / "demo-vllm.yaml"
    path.write_text(yaml.safe_dump(data))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    service = open_service(path)
    assert service.engine.backend.name == "vllm"
    yield service
    service.engine.close()


@pytest.fixture(scope="session")
def app_demo(app_service):
    """The page and the named API over that service (`app.build_demo`)."""
    from app import build_demo

    return build_demo(app_service)


@pytest.fixture(scope="session")
def vllm_engine(app_service):
    return app_service.engine


@pytest.fixture(scope="session")
def greedy(configs):
    return replace(configs[0].generation, temperature=0.0, repetition_penalty=1.0, max_new_tokens=32)
