"""Where SAE weights come from: a local folder, or a Hub repo fetched once into the Hugging Face cache.

Torch-free; huggingface_hub is imported only when a Hub repo is named, so local folders work without it.
"""

from __future__ import annotations

import re
from pathlib import Path

from steering.sae.names import SAEFormatError

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_TOKEN_HELP = (
    "Provide a Hugging Face token: set the HF_TOKEN environment variable, or run `hf auth login` "
    "(older huggingface_hub: `huggingface-cli login`)"
)


def hub_error_message(exc: BaseException, source: str, subfolder: str | None, revision: str | None) -> str:
    """What went wrong fetching `source` from the Hub, and how to fix it, for a huggingface_hub exception."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    head = f"could not fetch SAE {source!r} (subfolder={subfolder!r}, revision={revision!r}) from the Hugging Face Hub"
    try:
        has_token = bool(get_token())
    except Exception:  # a failing token source (e.g. OIDC exchange) must not hide the original error
        has_token = False
    token = "a token is set but" if has_token else "no token is set, and"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        return (f"{head}: the repo is gated; {token} access was refused. Accept its conditions at "
                f"https://huggingface.co/{source}, then use a token of that account. {_TOKEN_HELP}")  # fmt: skip
    if isinstance(exc, RevisionNotFoundError):
        return f"{head}: revision {revision!r} does not exist in that repo. Fix sae.revision (a branch, tag or commit)"
    if isinstance(exc, RepositoryNotFoundError) or status in (401, 403):
        return (f"{head}: the repo does not exist or is private ({token} the Hub refused or hid it). Check the "
                f"repo id; if it is private or gated, use a token with access. {_TOKEN_HELP}")  # fmt: skip
    not_cached = (LocalEntryNotFoundError, OfflineModeIsEnabled)
    if isinstance(exc, not_cached) or type(exc).__name__ == "IncompleteSnapshotError":
        import huggingface_hub.constants as constants

        return (f"{head}: it is not (completely) in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                f"the Hub cannot be reached (offline, HF_HUB_OFFLINE=1, or a connection error). Download it once "
                f"with network access (it is then used offline), or pass a local folder. Details: {exc}")  # fmt: skip
    if isinstance(exc, HfHubHTTPError):
        return f"{head}: the Hub answered HTTP {status}: {exc}"
    return f"{head}, and there is no local folder of that name: {type(exc).__name__}: {exc}"


def _is_connection_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    names = {t.__name__ for t in type(exc).__mro__}
    return isinstance(exc, (OfflineModeIsEnabled, ConnectionError, TimeoutError)) or bool(
        names & {"ConnectError", "TimeoutException", "NetworkError", "ConnectionError", "Timeout"}
    )


def resolve_sae_folder(source: str, subfolder: str | None = None, revision: str | None = None) -> Path:
    """A local path for `source` + `subfolder`: a folder, or a weights file where `subfolder` names one.

    `source` is an existing local folder, else a Hub repo id 'owner/name'. From the Hub only `subfolder` is
    downloaded (`subfolder` and `subfolder/*`), into the Hugging Face cache (HF_HUB_CACHE), with
    huggingface_hub's own progress bars. Once cached it works offline: huggingface_hub falls back to the
    cached snapshot when the Hub cannot be reached (or HF_HUB_OFFLINE=1), and a connection error during the
    download itself is retried with `local_files_only=True`. Errors (gated or private repo without a token,
    missing revision, offline and not cached) are `SAEFormatError`s saying how to fix them.
    """
    local = Path(source).expanduser()
    if local.is_dir():
        folder = local / subfolder if subfolder else local
        if not folder.exists():
            raise SAEFormatError(f"{local}: no subfolder {subfolder!r}")
        return folder
    if not _REPO_ID.match(source):
        raise SAEFormatError(f"SAE source {source!r} is neither a local folder nor a Hub repo id 'owner/name'")
    from huggingface_hub import snapshot_download

    sub = subfolder.strip("/") if subfolder else None
    patterns = [sub, f"{sub}/*"] if sub else None
    kwargs = dict(repo_id=source, allow_patterns=patterns, revision=revision)
    try:
        try:
            root = Path(snapshot_download(**kwargs))
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            root = Path(snapshot_download(**kwargs, local_files_only=True))
    except Exception as exc:
        raise SAEFormatError(hub_error_message(exc, source, subfolder, revision)) from exc
    folder = root / sub if sub else root
    if not folder.exists():
        raise SAEFormatError(f"Hub repo {source!r} (revision={revision!r}) has no file or folder {subfolder!r}")
    return folder
