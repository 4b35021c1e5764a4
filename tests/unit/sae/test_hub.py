"""Where SAE weights come from: local folders and files, the Hugging Face cache offline, and Hub error messages."""

from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import huggingface_hub.constants as constants
import pytest
import torch
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from steering.sae.hub import hub_error_message, resolve_sae_folder
from steering.sae.names import SAEFormatError
from steering.sae.registry import open_sae
from tests.unit.sae.writers import dl_state, qwen_state, write_dl

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "Qwen/SAE-Res-Qwen3-8B-Base-W64K-L0_50"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF_HUB_CACHE with the Hub unreachable (HF_HUB_OFFLINE), and no token."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    return cache


def cache_repo(cache: Path, repo: str, files: dict[str, object]) -> Path:
    """The layout huggingface_hub leaves behind: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    snapshot = storage / "snapshots" / COMMIT
    for name, state in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, snapshot / name)
    return snapshot


def http_error(cls, status: int, message: str):
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return cls(message, response=response)


# ---- local


def test_resolve_local_folder(tmp_path):
    folder = write_dl(tmp_path / "resid_post_layer_3" / "trainer_1", dl_state())
    assert resolve_sae_folder(str(tmp_path), "resid_post_layer_3/trainer_1") == folder
    assert resolve_sae_folder(str(folder)) == folder
    with pytest.raises(SAEFormatError, match="no subfolder 'trainer_9'"):
        resolve_sae_folder(str(tmp_path), "trainer_9")
    with pytest.raises(SAEFormatError, match="neither a local folder nor a Hub repo id"):
        resolve_sae_folder(str(tmp_path / "missing" / "deeper"))


def test_resolve_local_file(tmp_path):
    folder = tmp_path / "SAE-Res-Qwen3-8B-Base-W64K-L0_50"
    folder.mkdir()
    for layer in (3, 15):
        torch.save(qwen_state(), folder / f"layer{layer}.sae.pt")
    path = resolve_sae_folder(str(folder), "layer15.sae.pt")
    assert path == folder / "layer15.sae.pt"
    handle = open_sae(path)
    assert (handle.format, handle.layer, handle.k) == ("qwen_scope", 15, 50)


# ---- Hub, offline from the cache


def test_offline_cached_repo_is_found(hub_cache):
    snapshot = cache_repo(hub_cache, REPO, {"layer3.sae.pt": qwen_state(), "layer15.sae.pt": qwen_state()})
    path = resolve_sae_folder(REPO, "layer15.sae.pt")
    assert path == snapshot / "layer15.sae.pt"
    handle = open_sae(path)
    assert (handle.format, handle.layer, handle.k) == ("qwen_scope", 15, 50), "k from the cache folder's repo name"
    assert resolve_sae_folder(REPO) == snapshot


def test_offline_cached_subfolder(hub_cache):
    snapshot = cache_repo(hub_cache, "andyrdt/saes-tiny", {"resid_post_layer_3/trainer_1/ae.pt": dl_state()})
    sub = "resid_post_layer_3/trainer_1"
    assert resolve_sae_folder("andyrdt/saes-tiny", sub) == snapshot / sub
    with pytest.raises(SAEFormatError, match=r"'andyrdt/saes-tiny' \(revision=None\) has no file or folder 'layer_9'"):
        resolve_sae_folder("andyrdt/saes-tiny", "layer_9")


def test_offline_not_cached_says_how_to_fix(hub_cache):
    with pytest.raises(SAEFormatError) as err:
        resolve_sae_folder("nobody-here/no-such-sae", "layer_3")
    message = str(err.value)
    assert message.startswith("could not fetch SAE 'nobody-here/no-such-sae' (subfolder='layer_3', revision=None)")
    assert "not (completely) in the local Hugging Face cache" in message and str(hub_cache) in message
    assert "Download it once with network access" in message and "or pass a local folder" in message


def test_connection_error_retries_from_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs.get("local_files_only", False))
        if not kwargs.get("local_files_only"):
            raise ConnectionError("connection reset while downloading")
        (tmp_path / "layer_3").mkdir(exist_ok=True)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve_sae_folder("owner/cached-sae", "layer_3") == tmp_path / "layer_3"
    assert calls == [False, True]


# ---- Hub errors


def test_gated_repo_without_token_says_how_to_provide_one(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    exc = http_error(GatedRepoError, 401, "401 Client Error. Cannot access gated repo for url ...")
    message = hub_error_message(exc, "meta-llama/gated-saes", "layer_19", None)
    assert message.startswith("could not fetch SAE 'meta-llama/gated-saes' (subfolder='layer_19', revision=None)")
    assert "the repo is gated; no token is set, and access was refused" in message
    assert "https://huggingface.co/meta-llama/gated-saes" in message
    assert "HF_TOKEN" in message and "hf auth login" in message and "huggingface-cli login" in message


def test_hub_error_translation(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_xxx")
    private = hub_error_message(http_error(RepositoryNotFoundError, 404, "404"), "me/private", None, None)
    assert "does not exist or is private (a token is set but the Hub refused or hid it)" in private
    assert "HF_TOKEN" in private
    unauthorized = hub_error_message(http_error(HfHubHTTPError, 401, "401 Unauthorized"), "me/x", None, None)
    assert "does not exist or is private" in unauthorized and "hf auth login" in unauthorized
    revision = hub_error_message(http_error(RevisionNotFoundError, 404, "404"), "me/x", None, "v9")
    assert "revision 'v9' does not exist" in revision
    down = hub_error_message(http_error(HfHubHTTPError, 503, "503 Service Unavailable"), "me/x", None, None)
    assert "the Hub answered HTTP 503" in down


def test_gated_error_from_resolve(monkeypatch):
    def gated(**kwargs):
        raise http_error(GatedRepoError, 403, "403 Forbidden: gated")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(SAEFormatError, match=r"the repo is gated; no token is set.*HF_TOKEN.*hf auth login") as err:
        resolve_sae_folder("google/gated-scope", "layer_5")
    assert isinstance(err.value.__cause__, GatedRepoError)
