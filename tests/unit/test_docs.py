"""The README stays short, its links resolve, and every command it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_under_10_kb():
    assert len(README.encode("utf-8")) < 10 * 1024


def test_every_relative_link_in_the_readme_and_docs_resolves():
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_every_module_command_named_in_the_docs_exists():
    named = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "saes").rglob("README.md"))]:
        current = "\n".join(line for line in doc.read_text(encoding="utf-8").splitlines() if "→" not in line)  # not old names
        named |= set(re.findall(r"python -m (steering(?:\.\w+)+)", current))
    renamed = set(re.findall(r"`(?:python -m )?steering\.\w+` → `(?:python -m )?(steering(?:\.\w+)+)`", README))
    assert renamed and renamed <= named, f"renamed commands no doc shows under their new name: {sorted(renamed - named)}"
    missing = [m for m in sorted(named | renamed) if not (ROOT / (m.replace(".", "/") + ".py")).is_file()
               and not (ROOT / m.replace(".", "/") / "__main__.py").is_file()]  # a module, or a package with a __main__
    assert not missing, f"commands named in the docs that do not exist: {missing}"
