"""`ConfigError` and the helpers that word a config problem.

Every problem reads `key.path: what is wrong, got VALUE. Fix: what to write.`, so a visitor can correct
the YAML without reading code; the checks here append such lines to a list rather than raise, so one
`ConfigError` can list every problem at once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration. `problems` holds one line per problem, each naming key path, value and fix."""

    def __init__(self, problems: str | list[str] | tuple[str, ...], source: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = prefix + self.problems[0]
        else:
            head = f"{prefix}{len(self.problems)} problems in the config:"
            message = "\n".join([head, *self.problems])
        super().__init__(message)


def raise_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


def show(value: Any) -> str:
    """A value as the user wrote it in YAML, with its type when that is the problem."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"{list(value)!r} (a list of {len(value)})"
    if isinstance(value, Mapping):
        return f"{dict(value)!r} (a mapping)"
    return f"{value!r} ({type(value).__name__})"


def problem(path: str, what: str, value: Any, fix: str) -> str:
    return f"{path}: {what}, got {show(value)}. Fix: {fix}"


def is_number(v: Any) -> bool:
    """int or float, but not bool (YAML's `true` is not a strength)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_fix(v: Any, example: int) -> str:
    """How to write an integer the user wrote as something else."""
    if isinstance(v, str) and v.strip().lstrip("-").isdecimal():
        return f"write it without quotes: {int(v.strip())}"
    if isinstance(v, float) and math.isfinite(v) and v == int(v):
        return f"write it as a whole number: {int(v)}"
    return f"write a whole number such as {example}"


def check_int(problems: list[str], path: str, v: Any, example: int, minimum: int | None = 0) -> None:
    if not is_int(v):
        problems.append(problem(path, "expected a whole number", v, int_fix(v, example)))
    elif minimum is not None and v < minimum:
        problems.append(problem(path, f"must be >= {minimum}", v, f"use a value >= {minimum}, such as {example}"))


def check_finite(problems: list[str], path: str, v: Any, example: float) -> bool:
    """True when `v` is a finite number; otherwise appends the problem."""
    if not is_number(v):
        if isinstance(v, str):
            try:
                float(v)
                fix = f"write the number without quotes: {v.strip()}"
            except ValueError:
                fix = f"write a number such as {example}"
        else:
            fix = f"write a number such as {example}"
        problems.append(problem(path, "expected a number", v, fix))
        return False
    if not math.isfinite(v):
        problems.append(problem(path, "must be a finite number", v, f"write a finite number such as {example}"))
        return False
    return True


def check_str(problems: list[str], path: str, v: Any, fix: str, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str) or not v.strip():
        what = "expected a non-empty string" + (" or null" if optional else "")
        problems.append(problem(path, what, v, fix))


def check_bool(problems: list[str], path: str, v: Any, fix: str | None = None) -> None:
    if not isinstance(v, bool):
        problems.append(problem(path, "expected true or false", v, fix or f"write {path}: true or {path}: false"))


def unknown_key(prefix: str, key: Any, valid: tuple[str, ...], also: tuple[str, ...] = ()) -> str:
    """`prefix` is "" at top level, else e.g. "sae." or "features[2].". `also` are further accepted spellings."""
    close = difflib.get_close_matches(str(key), [*valid, *also], n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "remove it."
    return f"{prefix}{key}: unknown key. Fix: {hint} Valid keys: {', '.join(valid)}"
