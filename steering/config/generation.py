"""Generation settings: one set of limits and one parser for every way settings arrive.

The config (`generation:`), the page's sliders, the named `/chat` API, the OpenAI request and share links
all end in `GenerationSettings`, which checks itself against `LIMITS` (as vLLM's `SamplingParams` does), so
a value one entry accepts is never refused by another. `GenerationSettings.parse` reads loose values (JSON
numbers, slider floats, a link's text) under the caller's own argument names and refuses the first bad one
as `NAME must be EXPECTED, got VALUE.`; the dataclass itself words its problems as config problems
(`generation.<field>: ... Fix: ...`). A seed of -1 (or null) means a random seed each time, everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from steering.config.problems import int_fix, raise_if, show

SHOWN_CHARS = 60
RANDOM_SEED = -1
"""The seed that asks for a random one (stored as None)."""


def shown(value: Any) -> str:
    """`value`'s repr, cut to `SHOWN_CHARS` so a megabyte of input is not echoed back."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def finite_number(value: Any) -> bool:
    """A finite int or float, not a bool; JSON's 400-digit integers included (they do not fit a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Limit:
    """The values one setting takes: [lo, hi], or (lo, hi] with `lo_open`; `whole` for counts and seeds."""

    lo: float
    hi: float
    example: float
    whole: bool = False
    lo_open: bool = False
    meaning: str = ""
    """What a special value means, said after the range (e.g. "0 is greedy")."""
    fix: str = ""
    """What to write instead, for a number outside the range (a config problem's `Fix:`)."""

    def accepts(self, value: Any) -> bool:
        if not finite_number(value) or (self.whole and not float(value).is_integer()):
            return False
        return (value > self.lo if self.lo_open else value >= self.lo) and value <= self.hi

    @property
    def expected(self) -> str:
        kind = "a whole number" if self.whole else "a finite number"
        lo, hi = (int(self.lo), int(self.hi)) if self.whole else (f"{self.lo:g}", f"{self.hi:g}")
        span = f"> {lo} and <= {hi}" if self.lo_open else f"from {lo} to {hi}"
        return f"{kind} {span}" + (f" ({self.meaning})" if self.meaning else "")


LIMITS: Mapping[str, Limit] = {
    "max_new_tokens": Limit(1, 16384, 256, whole=True, fix="use a value from 1 to 16384, such as 256"),
    "temperature": Limit(0, 2, 0.7, meaning="0 is greedy", fix="use 0 for greedy or a positive value such as 0.7"),
    "top_p": Limit(0, 1, 0.9, lo_open=True, meaning="1 turns nucleus sampling off",
                   fix="use a value such as 0.9, or 1 to disable nucleus sampling"),
    "repetition_penalty": Limit(0, 2, 1.1, lo_open=True, meaning="1 is no penalty",
                                fix="use 1.0 for no penalty or a value such as 1.1"),
    "seed": Limit(RANDOM_SEED, 2**63 - 1, 0, whole=True, meaning="-1 for a random seed each time",
                  fix="use a seed >= 0, or null for a random seed each time"),
}
"""The one set of limits. Seeds stop at torch's largest; the server's own cap on tokens (the app's
`Limits.max_new_tokens`) lowers a request further, with a notice, rather than refusing it."""


class SettingsError(ValueError):
    """A refused generation setting, worded for the caller (`NAME must be EXPECTED, got VALUE.`)."""


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings for each reply, inside `LIMITS`."""

    max_new_tokens: int = 256
    """Most tokens generated per reply."""
    temperature: float = 0.7
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = 0.9
    """Nucleus sampling mass; 1 disables it."""
    repetition_penalty: float = 1.1
    """Repetition penalty; 1 means none."""
    seed: int | None = 0
    """Sampling seed; None (or -1, stored as None) draws a random seed each time."""

    def __post_init__(self) -> None:
        raise_if(self._problems())
        for name in ("temperature", "top_p", "repetition_penalty"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))
        if self.seed is not None:
            object.__setattr__(self, "seed", None if self.seed == RANDOM_SEED else int(self.seed))

    def _problems(self) -> list[str]:
        """Worded as config problems, `generation.<field>: ... Fix: ...`."""
        return [_config_problem(name, getattr(self, name)) for name in LIMITS if not _valid(name, getattr(self, name))]

    @classmethod
    def parse(cls, given: Mapping[str, Any], base: GenerationSettings | None = None,
              names: Mapping[str, str] | None = None) -> GenerationSettings:
        """`base` (the defaults) with the settings in `given` (field name -> value as sent), each checked
        against `LIMITS` and refused under the caller's name for it (`names`, default the field's own).
        A seed given as None or -1 is a random seed; to keep `base`'s, leave the seed out of `given`."""
        names = names or {}
        for field_name, value in given.items():
            if field_name not in LIMITS:
                raise TypeError(f"{field_name} is not a generation setting")
            if not _valid(field_name, value):
                raise SettingsError(f"{names.get(field_name, field_name)} must be {LIMITS[field_name].expected}, "
                                    f"got {shown(value)}.")
        return replace(base or cls(), **given)

    @property
    def greedy(self) -> bool:
        """True when temperature is 0."""
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """Canonical mapping form."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
        }


def _valid(name: str, value: Any) -> bool:
    return (name == "seed" and value is None) or LIMITS[name].accepts(value)


def _config_problem(name: str, value: Any) -> str:
    limit = LIMITS[name]
    if limit.whole and not (isinstance(value, int) and not isinstance(value, bool)):
        fix = int_fix(value, int(limit.example)) + (", or null for a random seed each time" if name == "seed" else "")
    elif isinstance(value, str):
        try:
            float(value)
            fix = f"write the number without quotes: {value.strip()}"
        except ValueError:
            fix = f"write a number such as {limit.example:g}"
    elif not finite_number(value):
        fix = f"write a {'finite ' if isinstance(value, (int, float)) and not isinstance(value, bool) else ''}number such as {limit.example:g}"
    else:
        fix = limit.fix
    return f"generation.{name}: must be {limit.expected}, got {show(value)}. Fix: {fix}"
