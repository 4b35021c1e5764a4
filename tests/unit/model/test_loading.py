"""steering.model.loading without loading a model: path resolution, device and dtype choice."""

from __future__ import annotations

import pytest
import torch

from steering.model.embedded import EMBEDDED_MODEL, default_model_dir
from steering.model.loading import pick_device, pick_dtype, resolve_model_path


def test_resolve_model_path() -> None:
    assert resolve_model_path(EMBEDDED_MODEL) == str(default_model_dir())
    assert resolve_model_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_pick_device_and_dtype_on_cpu() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")
        assert pick_dtype("auto", torch.device("cpu")) == torch.float32
        assert pick_dtype() == torch.float32
        with pytest.raises(ValueError, match="'cuda:1'.*no CUDA"):
            pick_device("cuda:1")
    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert pick_dtype("float16") == torch.float16


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "cuda:x", ""])
def test_bad_device_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        pick_device(bad)


def test_bad_dtype_is_named() -> None:
    with pytest.raises(ValueError, match="'int8'"):
        pick_dtype("int8", torch.device("cpu"))
