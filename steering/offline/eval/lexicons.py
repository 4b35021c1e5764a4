"""Concepts and their word lists, one versioned data file per concept (`data/lexicons/<name>.yaml`).

A concept file has a `name`, a `kind` (topic | place | animal | mood | style), the system prompt of its baseline
("Talk about X in every answer."), and its word lists by version. A released version's words never change, so a
result can always be recounted with the words it was counted with:
- version 1, the broad keyword lists of the keyword evaluation (`python -m steering.offline.evaluate`) and the
  rank report, with the prompts that rank features for the concept (`differential_prompts`);
- version 2, the tight lexicons of the AxBench-style scorer: only words that belong to the concept (no "eat",
  "team", "game", "happy"), with the subjects its probe is trained on (`probe_subjects`).

Matching (`matches`, `mentions`) is on whole words, case-insensitive, with the endings -s, -es, -d, -ed, -ing."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from steering.offline.eval.splits import DATA, DataError, names, read_data

BROAD, TIGHT = 1, 2
"""The two released versions (see the module docstring)."""
KINDS = ("topic", "place", "animal", "mood", "style")
T = TypeVar("T")


@dataclass(frozen=True)
class Concept:
    name: str
    kind: str
    system: str  # the baseline's system prompt
    version: int
    words: tuple[str, ...]
    probe_subjects: tuple[str, ...] = ()  # the probe's concept texts: the probe set's templates x these
    differential_prompts: tuple[str, ...] = ()  # prompts about the concept, for a differential ranking

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def concept_names(root: Path = DATA) -> list[str]:
    return names("lexicons", root)


@lru_cache(maxsize=None)
def _versions(name: str, root: Path) -> dict[int, Concept]:
    d = read_data("lexicons", name, "concept", root)
    if d.get("kind") not in KINDS:
        raise DataError(f"{name}.yaml: kind must be one of {', '.join(KINDS)}, got {d.get('kind')!r}")
    return {int(v): Concept(d["name"], d["kind"], d["system"], int(v), tuple(body["words"]),
                            tuple(body.get("probe_subjects") or ()), tuple(body.get("differential_prompts") or ()))
            for v, body in d["versions"].items()}


def concept(name: str, version: int = TIGHT, root: Path = DATA) -> Concept:
    """The concept's word list of `version`; a concept without that version is an error naming those it has."""
    found = _versions(name, root)
    if version not in found:
        raise DataError(f"concept {name!r} has no lexicon version {version}; it has {', '.join(map(str, sorted(found)))}")
    return found[version]


def concepts(version: int = TIGHT, root: Path = DATA) -> dict[str, Concept]:
    """Every concept with a word list of `version`, by name."""
    return {n: v[version] for n in concept_names(root) if version in (v := _versions(n, root))}


def named_in(label: str | None, table: Mapping[str, T]) -> T | None:
    """The entry of `table` whose name the label names first, as a whole word, case-insensitive ("football
    (ball sports)" -> football), or None."""
    text = (label or "").lower()
    found = [(m.start(), -len(name), name) for name in table
             if (m := re.search(rf"\b{re.escape(name.lower())}\b", text))]
    return table[min(found)[2]] if found else None


def concept_for(label: str | None, version: int = TIGHT, root: Path = DATA) -> Concept | None:
    """The concept of `version` that a feature label names, or None."""
    return named_in(label, concepts(version, root))


def mentions(text: str, keywords: Sequence[str]) -> bool:
    """Whether `text` contains one of `keywords` as a whole word, case-insensitive; an ending "s", "es", "d", "ed"
    or "ing" is allowed, so "laughed" counts for "laugh" and "galaxies" needs its own keyword."""
    return bool(matches(text, keywords, first=True))


def matches(text: str, keywords: Sequence[str], first: bool = False) -> list[str]:
    """The keywords `text` mentions (as `mentions` reads them), lower-case, in order of appearance."""
    if not keywords:
        return []
    pattern = r"\b(" + "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True)) + r")(?:s|es|d|ed|ing)?\b"
    found = re.finditer(pattern, text, flags=re.IGNORECASE)
    return [m.group(1).lower() for m in (found if not first else [next(found, None)]) if m is not None]
