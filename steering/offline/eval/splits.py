"""Prompt splits and the probe set, read from versioned data files (`data/splits/<name>.yaml`, `data/probes.yaml`).

A split file has a `name`, a `version`, a `role` (`pick`: features and strengths may be chosen on it; `report`:
held out until the round's report), the `round` it belongs to, and its prompts: those of the splits it
`include`s, in order, then its own. A run names a split as `name` (the file's version) or `name@version` (that
version or an error), and records the version it ran on. Report splits stay apart from the pick splits of their
round and earlier ones (tests/unit/offline/eval/test_splits.py): a later round's pick split may include an
earlier round's report split, once that report has been read."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parent / "data"
ROLES = ("pick", "report")


class DataError(ValueError):
    """A split, concept or probe set that does not exist, or not in the version asked for."""


@dataclass(frozen=True)
class Split:
    name: str
    version: int
    role: str  # pick | report
    round: int
    prompts: tuple[str, ...]
    include: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """`name@version`, as a run records it."""
        return f"{self.name}@{self.version}"


def names(kind: str, root: Path = DATA) -> list[str]:
    """The data files of a kind ("splits", "lexicons"), by name."""
    return sorted(p.stem for p in (root / kind).glob("*.yaml"))


def read_data(kind: str, name: str, what: str, root: Path = DATA) -> dict:
    """The mapping in `<root>/<kind>/<name>.yaml`; a missing file is an error naming those that exist."""
    path = root / kind / f"{name}.yaml"
    if not path.is_file():
        raise DataError(f"no {what} {name!r}; known: {', '.join(names(kind, root))}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DataError(f"{path.name}: expected a mapping of fields, got {type(data).__name__}")
    return data


def split_names(root: Path = DATA) -> list[str]:
    return names("splits", root)


@lru_cache(maxsize=None)
def _load_split(name: str, root: Path) -> Split:
    d = read_data("splits", name, "split", root)
    if d.get("role") not in ROLES:
        raise DataError(f"{name}.yaml: role must be one of {', '.join(ROLES)}, got {d.get('role')!r}")
    include = tuple(d.get("include") or ())
    prompts = [p for inc in include for p in _load_split(inc, root).prompts] + list(d.get("prompts") or ())
    return Split(d["name"], int(d["version"]), d["role"], int(d["round"]), tuple(prompts), include)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """"report2@1" -> ("report2", 1); "report2" -> ("report2", None)."""
    name, _, version = str(ref).partition("@")
    if version and not version.isdecimal():
        raise DataError(f"{ref!r}: the version after @ must be a whole number, as in report2@1")
    return name.strip(), int(version) if version else None


def split(ref: str, root: Path = DATA) -> Split:
    """The split `name` or `name@version`; a version other than the file's is an error, never a silent swap."""
    name, version = parse_ref(ref)
    s = _load_split(name, root)
    if version is not None and version != s.version:
        raise DataError(f"split {name!r} is at version {s.version}, not {version}: the prompts of version {version} "
                        f"are no longer shipped; write {s.ref}, or check out the commit the run was made at")
    return s


@dataclass(frozen=True)
class ProbeSet:
    """The probe prompts: `templates` x subjects; the last `heldout_templates` templates and the last
    `heldout_instructions` neutral instructions are the probes' held-out texts."""

    version: int
    templates: tuple[str, ...]
    heldout_templates: int
    neutral_subjects: tuple[str, ...]
    neutral_instructions: tuple[str, ...]
    heldout_instructions: int

    def prompts(self, subjects) -> list[str]:
        """Template-major: every subject in the first template, then in the second..."""
        return [t.format(s) for t in self.templates for s in subjects]

    def neutral_prompts(self) -> list[str]:
        return self.prompts(self.neutral_subjects) + list(self.neutral_instructions)

    def split_texts(self, texts: list, n_subjects: int) -> tuple[list, list]:
        """Texts of `prompts(subjects)`, in order: (training, held out), the held-out templates last."""
        cut = (len(self.templates) - self.heldout_templates) * n_subjects
        return texts[:cut], texts[cut : len(self.templates) * n_subjects]

    def split_neutral(self, texts: list) -> tuple[list, list]:
        """Texts of `neutral_prompts()`: the templates as `split_texts`, then the instructions, the last few held out."""
        train, held = self.split_texts(texts, len(self.neutral_subjects))
        rest = texts[len(self.templates) * len(self.neutral_subjects) :]
        cut = len(rest) - self.heldout_instructions
        return train + rest[:cut], held + rest[cut:]


@lru_cache(maxsize=None)
def probe_set(root: Path = DATA) -> ProbeSet:
    d = yaml.safe_load((root / "probes.yaml").read_text(encoding="utf-8"))
    return ProbeSet(int(d["version"]), tuple(d["templates"]), int(d["heldout_templates"]), tuple(d["neutral_subjects"]),
                    tuple(d["neutral_instructions"]), int(d["heldout_instructions"]))
