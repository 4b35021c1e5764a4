"""The original project's flat keys, translated to the canonical form in this one place.

The original demo wrote everything at top level (`llm_name`, `sae_path`, `temperature`, ...) and carried
evaluation keys this app does not use. `to_canonical` rewrites such a mapping into the canonical one, so
the parser and the dataclasses know only the canonical form. A legacy key that disagrees with its
canonical key is a problem, never silently resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steering.config.problems import is_number, problem, show

IGNORED_KEYS = (
    "description",
    "min_intensity_reduced",
    "max_intensity_reduced",
    "num_values",
    "prompt_dataset",
    "num_prompts",
    "use_llm_evaluation",
    "concept",
)
"""The original project's evaluation keys: tolerated at top level and ignored."""

ALIASES = {
    "llm_name": "model",
    "sae_path": "sae.source",
    "sae_filename_prefix": "sae.path",
    "sae_filename_suffix": "sae.path",
    "temperature": "generation.temperature",
    "seed": "generation.seed",
    "max_new_tokens": "generation.max_new_tokens",
    "repetition_penalty": "generation.repetition_penalty",
    "top_p": "generation.top_p",
    "clamp_intensity": "mode",
    "steer_prompt": "steer_generated_only",
}
"""The original project's flat keys and the canonical key each one stands for."""

LEGACY_KEYS = (*ALIASES, *IGNORED_KEYS)
"""Every top-level key the original project wrote that the canonical form does not have."""

_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".npz", ".json")
_MISSING = object()


def to_canonical(data: Mapping) -> tuple[dict[str, Any], list[str]]:
    """`data` with every legacy key translated into its canonical place or dropped, and the problems found.

    Other keys pass through untouched, known or not: the parser reports those. An `sae` or `generation`
    that is not a mapping is left for the parser to report, and the aliases into it are not merged.
    """
    problems: list[str] = []
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    _put(out, "model", _merge(problems, "model", data.get("model", _MISSING), "llm_name", data.get("llm_name", _MISSING)))
    _sae(out, problems, data)
    clamp = data.get("clamp_intensity", _MISSING)
    mode = _flag(problems, "clamp_intensity", clamp, lambda on: "clamp" if on else "add", "write mode: clamp (or mode: add) instead")
    _put(out, "mode", _merge(problems, "mode", data.get("mode", _MISSING), "clamp_intensity", mode, clamp))
    steer_prompt = data.get("steer_prompt", _MISSING)
    gen_only = _flag(problems, "steer_prompt", steer_prompt, lambda on: not on, "write steer_generated_only: false (or true) instead")
    _put(out, "steer_generated_only", _merge(problems, "steer_generated_only", data.get("steer_generated_only", _MISSING), "steer_prompt", gen_only, steer_prompt))
    _generation(out, problems, data)
    return out, problems


def _sae(out: dict[str, Any], problems: list[str], data: Mapping) -> None:
    """`sae_path` is the source; `sae_filename_prefix` + `{layer}` + `sae_filename_suffix` the path, minus a file name."""
    raw = data.get("sae")
    if raw is not None and not isinstance(raw, Mapping):
        return
    section = dict(raw or {})
    source = _merge(problems, "sae.source", section.get("source", _MISSING), "sae_path", data.get("sae_path", _MISSING))
    prefix, suffix = data.get("sae_filename_prefix", _MISSING), data.get("sae_filename_suffix", _MISSING)
    alias_path: Any = _MISSING
    if prefix is not _MISSING or suffix is not _MISSING:
        parts_ok = True
        for name, v in (("sae_filename_prefix", prefix), ("sae_filename_suffix", suffix)):
            if v is not _MISSING and v is not None and not isinstance(v, str):
                problems.append(problem(name, "expected a string", v, f'quote it: {name}: "resid_post_layer_"'))
                parts_ok = False
        if parts_ok:
            joined = f"{prefix if isinstance(prefix, str) else ''}{{layer}}{suffix if isinstance(suffix, str) else ''}"
            alias_path = _strip_file_name(joined).strip("/") or None
    path = _merge(problems, "sae.path", section.get("path", _MISSING), "sae_filename_prefix/sae_filename_suffix", alias_path)
    if raw is None and source is _MISSING:
        if alias_path is not _MISSING:
            problems.append(
                "sae_path: missing, but sae_filename_prefix/sae_filename_suffix are given. "
                "Fix: add sae_path: <Hub repo id or local folder> (or sae: {source: ...})"
            )
        return
    _put(section, "source", source)
    _put(section, "path", path)
    out["sae"] = section


def _generation(out: dict[str, Any], problems: list[str], data: Mapping) -> None:
    """Each flat sampling key stands for the same key under `generation`."""
    raw = data.get("generation")
    if raw is not None and not isinstance(raw, Mapping):
        return
    section = dict(raw or {})
    for key in ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed"):
        _put(section, key, _merge(problems, f"generation.{key}", section.get(key, _MISSING), key, data.get(key, _MISSING)))
    if raw is not None or section:
        out["generation"] = section


def _flag(problems: list[str], name: str, value: Any, translate: Any, fix: str) -> Any:
    """A legacy true/false key's canonical value, or _MISSING when absent or not a boolean (then reported)."""
    if value is _MISSING:
        return _MISSING
    if isinstance(value, bool):
        return translate(value)
    problems.append(problem(name, "expected true or false", value, fix))
    return _MISSING


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not _MISSING:
        target[key] = value


def _merge(problems: list[str], canonical_path: str, canonical: Any, alias_name: str, alias_value: Any, alias_shown: Any = _MISSING) -> Any:
    """Combine a canonical value and its alias's (already translated) value; report a conflict."""
    if alias_value is _MISSING:
        return canonical
    if canonical is _MISSING:
        return alias_value
    if not _same(canonical, alias_value):
        shown = alias_value if alias_shown is _MISSING else alias_shown
        problems.append(
            f"{alias_name}: conflicts with {canonical_path} ({alias_name} means {canonical_path}: {_yaml(alias_value)}, "
            f"but {canonical_path} is {_yaml(canonical)}), got {show(shown)}. Fix: remove {alias_name} and keep {canonical_path}"
        )
    return canonical


def _same(a: Any, b: Any) -> bool:
    """Equal values, not counting True == 1 as equal."""
    return (a == b and type(a) is type(b)) or (is_number(a) and is_number(b) and a == b)


def _yaml(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return "null" if v is None else repr(v)


def _strip_file_name(path: str) -> str:
    """`resid_post_layer_{layer}/trainer_1/ae.pt` -> `resid_post_layer_{layer}/trainer_1`."""
    head, _, last = path.rstrip("/").rpartition("/")
    if "{layer}" not in last and last.lower().endswith(_WEIGHT_FILE_SUFFIXES):
        return head
    return path
