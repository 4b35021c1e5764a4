"""Put this repository on a Hugging Face Space: `python tools/space_upload.py USER/SPACE [--dry-run]`.

It calls `huggingface_hub.HfApi.upload_folder` (what `hf upload` runs): one commit of the working tree, with every
file the Hub stores as a large file (over 10 MB, or binary) sent through Xet (hf_xet, in requirements.txt), so the
37 MB SAE weights need no git-lfs and no `.gitattributes` rules. `IGNORE` leaves out what a clone gathers but a
Space must not get: virtual environments, caches, test and benchmark artefacts. `space_files` lists what would be
sent the way `upload_folder` lists it (every file under the folder, then `huggingface_hub.utils.filter_repo_objects`
with these patterns and the library's own `DEFAULT_IGNORE_PATTERNS`); `--dry-run` prints that list and stops.
docs/deployment.md has the whole procedure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LARGE = 10 * 2**20
"""The Hub refuses a plain git push of a file over 10 MB; `upload_folder` sends such files through Xet."""

IGNORE = [
    ".venv*", ".venv*/**", "venv/**", "env/**", "benchmarks/.venvs/**",  # virtual environments
    "**/__pycache__/**", "*.pyc", "**/*.pyc", ".cache/**", "**/.cache/**",  # caches
    ".pytest_cache/**", ".hypothesis/**", ".mypy_cache/**", ".ruff_cache/**",
    "test-artifacts/**", "*.log", "**/*.log", "benchmarks/results/*.tmp",  # test and benchmark artefacts
    "build/**", "dist/**", "*.egg-info/**", ".whl/**", ".gl/**",  # build output, local wheels
    ".idea/**", ".vscode/**", ".DS_Store", "**/.DS_Store",
]


def space_files(root: Path = ROOT) -> list[tuple[str, int]]:
    """(path relative to `root`, size in bytes) of every file `upload_folder(root, ignore_patterns=IGNORE)` sends."""
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS  # what upload_folder adds
    from huggingface_hub.utils import filter_repo_objects

    root = Path(root).expanduser().resolve()
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.glob("**/*")) if p.is_file()}
    kept = filter_repo_objects(files, ignore_patterns=IGNORE + list(DEFAULT_IGNORE_PATTERNS))
    return [(path, files[path].stat().st_size) for path in kept]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Upload this repository to a Hugging Face Space (docs/deployment.md).")
    p.add_argument("space", help="the Space's id, USER/SPACE (created first, with `hf repo create ... --repo-type space`)")
    p.add_argument("--dry-run", action="store_true", help="list what would be sent, and send nothing")
    p.add_argument("--message", default="Upload from a clone", help="the commit message")
    args = p.parse_args(argv)
    files = space_files()
    for path, size in files:
        note = "  (large: sent through Xet)" if size > LARGE else ""
        print(f"{size / 2**20:9.2f} MiB  {path}{note}")
    print(f"{len(files)} files, {sum(s for _, s in files) / 2**20:.1f} MiB")
    if args.dry_run:
        return 0
    from huggingface_hub import HfApi

    info = HfApi().upload_folder(folder_path=ROOT, repo_id=args.space, repo_type="space", ignore_patterns=list(IGNORE),
                                 commit_message=args.message)
    print(f"uploaded: {info.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
