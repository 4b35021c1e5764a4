"""steering.backends.registry: names to classes, imported only when asked for; the config checks names against it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from steering.backends import registry
from steering.backends.base import Backend
from steering.config import ConfigError, parse_config
from tests.helpers import ROOT


def test_every_registered_backend_is_a_backend_of_that_name():
    for name in ("hooks", "nnsight", "vllm", "remote"):  # their modules import vLLM or nnsight only when started
        cls = registry.backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name


def test_a_config_naming_a_backend_imports_no_backend_nor_torch():
    code = ("import sys; from steering.config import parse_config; parse_config({'model': 'm', 'backend': 'vllm'});"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'vllm', 'nnsight', 'httpx')"
            " or m.startswith('steering.backends.') and m != 'steering.backends.registry'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"backend: must be one of hooks, nnsight, vllm, remote, got 'tgi'\. Fix: write backend: hooks"):
        registry.backend_class("tgi")
    with pytest.raises(ConfigError, match="backend: must be one of hooks, nnsight, vllm, remote"):
        parse_config({"model": "m", "backend": "tgi"})


def test_register_adds_a_name_the_config_accepts(monkeypatch):
    monkeypatch.setattr(registry, "BACKENDS", dict(registry.BACKENDS))
    monkeypatch.setattr("steering.config.schema.BACKENDS", registry.BACKENDS)
    registry.register("mine", "steering.backends.hooks:HooksBackend")
    assert parse_config({"model": "m", "backend": "mine"}).backend == "mine"
    assert registry.backend_class("mine").name == "hooks"
    registry.register("mine", "steering.backends.hooks:HooksBackend")  # the same again is fine
    with pytest.raises(ValueError, match="already registered as steering.backends.hooks:HooksBackend"):
        registry.register("mine", "elsewhere:Other")
    with pytest.raises(ValueError, match="written 'module:Class'"):
        registry.register("bad", "no_class_here")


def test_a_backend_without_a_model_here_says_so_when_handed_one():
    remote = registry.backend_class("remote")
    with pytest.raises(ValueError, match="backend: remote holds no model in this process"):
        remote.on_model(object(), object())
