"""The demo configuration: what `demo.yaml` says, parsed and validated.

Canonical form (every key except `model` is optional)::

    model: embedded:smollm2-135m-instruct   # Hub id, local folder, or the embedded default name
    device: auto        # auto | cpu | cuda | cuda:N | mps
    dtype: auto         # auto | float32 | bfloat16 | float16
    sae:                # optional
      source: andyrdt/saes-llama-3.1-8b-instruct   # Hub repo id or local folder
      format: auto      # one of SAE_FORMATS
      path: "resid_post_layer_{layer}/trainer_1"   # subfolder per layer; optional
      revision: null
    features:
      - [15, 21576, 8.0]              # [layer, feature_idx, strength]; [layer, feature_idx] = strength 0
      - {layer: 15, index: 123, strength: 8.0, label: "Eiffel Tower", mode: clamp, range: [0, 20]}
    mode: add           # default mode for features without their own: add | clamp | pin
    steer_special_tokens: true
    steer_generated_only: false
    generation: {max_new_tokens: 256, temperature: 0.7, top_p: 0.9, repetition_penalty: 1.1, seed: 0}
    system_prompt: null
    inspector_layer: 15
    vectors: steering_vectors.pt

The original project's flat keys are accepted as aliases (see `ALIASES`), and its evaluation keys
(`IGNORED_KEYS`) are tolerated and dropped. Every other unknown key is an error.

Decisions:
- Features without an `sae` section are allowed only when `vectors` is given explicitly (the pre-extracted
  vectors file carries their decoder directions). `pin` mode needs the SAE's encoder, so a pinned feature
  always needs `sae`.
- A feature's `range` is its slider range; a strength outside its own range is an error.
- Duplicate features (same layer and index) are an error: merge them into one entry.

Every problem is reported as `key.path: what is wrong, got VALUE. Fix: what to write.`; parsing collects
all problems and raises one `ConfigError` listing them one per line. The module is pure Python (no torch).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MODES",
    "SAE_FORMATS",
    "DTYPES",
    "DEFAULT_MODEL",
    "DEFAULT_VECTORS",
    "IGNORED_KEYS",
    "ALIASES",
    "ConfigError",
    "FeatureSpec",
    "SAESpec",
    "GenerationSettings",
    "DemoConfig",
    "parse_config",
    "load_config",
]

MODES = ("add", "clamp", "pin")
"""Steering modes (see notes/steering-math.md): add `h + s u`, clamp the component along u to s, pin the SAE's reading to s."""

SAE_FORMATS = ("auto", "saelens", "dictionary_learning", "gemma_scope", "qwen_scope", "sparsify", "goodfire")
"""SAE weight formats `sae.format` may name; `auto` detects from the files. Extend here when a loader is added."""

DTYPES = ("auto", "float32", "bfloat16", "float16")

BACKENDS = ("hooks", "nnsight")
"""Values of `dtype`."""

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
"""The embedded default model's name, as `model` spells it."""

DEFAULT_VECTORS = "steering_vectors.pt"
"""Default pre-extracted vectors file, relative to the YAML's folder."""

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

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".npz", ".json")
_LOCAL_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")


# --------------------------------------------------------------------------------------------- errors


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


def _show(value: Any) -> str:
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


def _problem(path: str, what: str, value: Any, fix: str) -> str:
    return f"{path}: {what}, got {_show(value)}. Fix: {fix}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_fix(v: Any, example: int) -> str:
    """How to write an integer the user wrote as something else."""
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return f"write it without quotes: {int(v.strip())}"
    if isinstance(v, float) and math.isfinite(v) and v == int(v):
        return f"write it as a whole number: {int(v)}"
    return f"write a whole number such as {example}"


def _check_int(problems: list[str], path: str, v: Any, example: int, minimum: int | None = 0) -> None:
    if not _is_int(v):
        problems.append(_problem(path, "expected a whole number", v, _int_fix(v, example)))
    elif minimum is not None and v < minimum:
        problems.append(_problem(path, f"must be >= {minimum}", v, f"use a value >= {minimum}, such as {example}"))


def _check_finite(problems: list[str], path: str, v: Any, example: float) -> bool:
    if not _is_number(v):
        if isinstance(v, str):
            try:
                float(v)
                fix = f"write the number without quotes: {v.strip()}"
            except ValueError:
                fix = f"write a number such as {example}"
        else:
            fix = f"write a number such as {example}"
        problems.append(_problem(path, "expected a number", v, fix))
        return False
    if not math.isfinite(v):
        problems.append(_problem(path, "must be a finite number", v, f"write a finite number such as {example}"))
        return False
    return True


def _check_str(problems: list[str], path: str, v: Any, fix: str, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str) or not v.strip():
        what = "expected a non-empty string" + (" or null" if optional else "")
        problems.append(_problem(path, what, v, fix))


def _check_bool(problems: list[str], path: str, v: Any) -> None:
    if not isinstance(v, bool):
        problems.append(_problem(path, "expected true or false", v, f"write {path}: true or {path}: false"))


def _unknown_key(prefix: str, key: Any, valid: tuple[str, ...], also: tuple[str, ...] = ()) -> str:
    """`prefix` is "" at top level, else e.g. "sae." or "features[2].". `also` are further accepted spellings."""
    close = difflib.get_close_matches(str(key), [*valid, *also], n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "remove it."
    return f"{prefix}{key}: unknown key. Fix: {hint} Valid keys: {', '.join(valid)}"


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


# --------------------------------------------------------------------------------------- dataclasses


def _feature_problems(
    prefix: str,
    layer: Any,
    index: Any,
    strength: Any,
    label: Any,
    mode: Any,
    rng: Any,
) -> list[str]:
    """Every problem of one feature's fields, each named `{prefix}.{field}`."""
    problems: list[str] = []
    _check_int(problems, f"{prefix}.layer", layer, 15)
    _check_int(problems, f"{prefix}.index", index, 21576)
    strength_ok = _check_finite(problems, f"{prefix}.strength", strength, 8.0)
    if label is not None and not isinstance(label, str):
        problems.append(_problem(f"{prefix}.label", "expected a string or null", label, 'quote it: label: "Eiffel Tower"'))
    if mode is not None and mode not in MODES:
        problems.append(_problem(f"{prefix}.mode", f"must be one of {', '.join(MODES)}", mode, f"write mode: {MODES[0]}, or leave it out to use the top-level mode"))
    if rng is not None:
        if not isinstance(rng, (list, tuple)) or len(rng) != 2:
            problems.append(_problem(f"{prefix}.range", "expected two numbers [min, max]", rng, "write range: [0, 20]"))
        else:
            lo_ok = _check_finite(problems, f"{prefix}.range[0]", rng[0], 0.0)
            hi_ok = _check_finite(problems, f"{prefix}.range[1]", rng[1], 20.0)
            if lo_ok and hi_ok:
                if not rng[0] < rng[1]:
                    problems.append(_problem(f"{prefix}.range", "min must be less than max", rng, f"write range: [{rng[1]}, {rng[0]}] or widen it"))
                elif strength_ok and not rng[0] <= strength <= rng[1]:
                    problems.append(
                        _problem(
                            f"{prefix}.strength",
                            f"lies outside its own range [{rng[0]}, {rng[1]}]",
                            strength,
                            f"use a strength between {rng[0]} and {rng[1]}, or widen range",
                        )
                    )
    return problems


@dataclass(frozen=True)
class FeatureSpec:
    """One SAE feature to steer with."""

    layer: int
    """Decoder layer whose output (resid_post) is steered, 0-based."""
    index: int
    """Feature index in that layer's SAE, 0-based."""
    strength: float = 0.0
    """Steering strength s: added amount (add), target component (clamp) or target activation (pin)."""
    label: str | None = None
    """Human-readable name shown in the app; None shows `feature {index} @ layer {layer}`."""
    mode: str | None = None
    """This feature's mode (one of MODES); None uses the config's top-level `mode`."""
    range: tuple[float, float] | None = None
    """Slider range (min, max) for the strength; the strength must lie inside it."""
    enabled: bool = True
    """False: listed with its recommended strength, but switched off until someone turns it on."""

    def __post_init__(self) -> None:
        rng = self.range
        if isinstance(rng, list):
            rng = tuple(rng)
        if rng is not None and isinstance(rng, tuple) and len(rng) == 2 and all(_is_number(x) for x in rng):
            rng = (float(rng[0]), float(rng[1]))
        object.__setattr__(self, "range", rng)
        if _is_number(self.strength):
            object.__setattr__(self, "strength", float(self.strength))
        _raise(_feature_problems("feature", self.layer, self.index, self.strength, self.label, self.mode, self.range))

    @property
    def key(self) -> str:
        """Stable identifier `L{layer}:{index}`."""
        return f"L{self.layer}:{self.index}"

    @property
    def display_name(self) -> str:
        """The label, or `feature {index} @ layer {layer}`."""
        return self.label or f"feature {self.index} @ layer {self.layer}"

    def to_dict(self) -> dict[str, Any]:
        """Canonical mapping form; None fields are left out."""
        d: dict[str, Any] = {"layer": self.layer, "index": self.index, "strength": self.strength}
        if self.label is not None:
            d["label"] = self.label
        if self.mode is not None:
            d["mode"] = self.mode
        if self.range is not None:
            d["range"] = [self.range[0], self.range[1]]
        if not self.enabled:
            d["enabled"] = False
        return d


def _sae_problems(prefix: str, source: Any, fmt: Any, path: Any, revision: Any, k: Any = None) -> list[str]:
    problems: list[str] = []
    if k is not None:
        _check_int(problems, f"{prefix}.k", k, 50, minimum=1)
    _check_str(problems, f"{prefix}.source", source, "write source: <Hub repo id or local folder>, e.g. andyrdt/saes-llama-3.1-8b-instruct")
    if fmt not in SAE_FORMATS:
        problems.append(_problem(f"{prefix}.format", f"must be one of {', '.join(SAE_FORMATS)}", fmt, "write format: auto to detect it from the files"))
    _check_str(problems, f"{prefix}.path", path, 'write path: "resid_post_layer_{layer}/trainer_1", or leave it out', optional=True)
    _check_str(problems, f"{prefix}.revision", revision, 'quote it: revision: "main", or leave it out', optional=True)
    return problems


@dataclass(frozen=True)
class SAESpec:
    """Where the SAE weights live."""

    source: str
    """Hub repo id or local folder (a relative folder resolves against the YAML's folder)."""
    format: str = "auto"
    """Weight format, one of SAE_FORMATS; `auto` detects it from the files."""
    path: str | None = None
    """Subfolder per layer inside `source`, with `{layer}` substituted; None: weights at the top of `source`."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); None: the default branch."""
    k: int | None = None
    """TopK's k where the files do not record it (Qwen-Scope); None: read it from the files or the repo name."""

    def __post_init__(self) -> None:
        _raise(_sae_problems("sae", self.source, self.format, self.path, self.revision, self.k))

    def subfolder(self, layer: int) -> str | None:
        """The subfolder holding `layer`'s SAE, or None when weights sit at the top of `source`."""
        if self.path is None:
            return None
        return self.path.replace("{layer}", str(layer))

    def to_dict(self) -> dict[str, Any]:
        """Canonical mapping form."""
        d = {"source": self.source, "format": self.format, "path": self.path, "revision": self.revision}
        if self.k is not None:
            d["k"] = self.k
        return d


def _generation_problems(prefix: str, max_new_tokens: Any, temperature: Any, top_p: Any, repetition_penalty: Any, seed: Any) -> list[str]:
    problems: list[str] = []
    _check_int(problems, f"{prefix}.max_new_tokens", max_new_tokens, 256, minimum=1)
    if _check_finite(problems, f"{prefix}.temperature", temperature, 0.7) and temperature < 0:
        problems.append(_problem(f"{prefix}.temperature", "must be >= 0 (0 means greedy)", temperature, "use 0 for greedy or a positive value such as 0.7"))
    if _check_finite(problems, f"{prefix}.top_p", top_p, 0.9) and not 0 < top_p <= 1:
        problems.append(_problem(f"{prefix}.top_p", "must satisfy 0 < top_p <= 1", top_p, "use a value such as 0.9, or 1 to disable nucleus sampling"))
    if _check_finite(problems, f"{prefix}.repetition_penalty", repetition_penalty, 1.1) and repetition_penalty <= 0:
        problems.append(_problem(f"{prefix}.repetition_penalty", "must be > 0", repetition_penalty, "use 1.0 for no penalty or a value such as 1.1"))
    if seed is not None:
        if not _is_int(seed):
            problems.append(_problem(f"{prefix}.seed", "expected a whole number or null", seed, _int_fix(seed, 0) + ", or null for a random seed each time"))
        elif seed < 0:
            problems.append(_problem(f"{prefix}.seed", "must be >= 0", seed, "use a seed >= 0, or null for a random seed each time"))
    return problems


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings for each reply."""

    max_new_tokens: int = 256
    """Most tokens generated per reply, >= 1."""
    temperature: float = 0.7
    """Sampling temperature, >= 0; 0 means greedy decoding."""
    top_p: float = 0.9
    """Nucleus sampling mass, 0 < top_p <= 1; 1 disables it."""
    repetition_penalty: float = 1.1
    """Repetition penalty, > 0; 1 means none."""
    seed: int | None = 0
    """Sampling seed, >= 0; None draws a random seed each time."""

    def __post_init__(self) -> None:
        _raise(_generation_problems("generation", self.max_new_tokens, self.temperature, self.top_p, self.repetition_penalty, self.seed))
        for name in ("temperature", "top_p", "repetition_penalty"):
            object.__setattr__(self, name, float(getattr(self, name)))

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


def _is_local_path(s: str, base_dir: Path) -> bool:
    """A local path exists (relative to base_dir) or starts with ./ ../ / ~."""
    if s.startswith(_LOCAL_PREFIXES):
        return True
    try:
        return (base_dir / s).exists()
    except OSError:
        return False


def _resolve_local(s: str, base_dir: Path) -> str:
    p = Path(s).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    return str(p)


@dataclass(frozen=True)
class DemoConfig:
    """A whole steering demo: model, SAE, features, and how to generate."""

    model: str
    """Hub id, local folder (relative to base_dir), or the embedded default name (DEFAULT_MODEL)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    dtype: str = "auto"
    """One of DTYPES."""
    sae: SAESpec | None = None
    """Where the SAE lives; None when no SAE is used (features then come from the vectors file)."""
    features: tuple[FeatureSpec, ...] = ()
    """Features to steer with, in config order (same-layer features apply in this order)."""
    mode: str = "add"
    """Default mode (one of MODES) for features without their own."""
    steer_special_tokens: bool = True
    """False: BOS and chat-control tokens stay unsteered."""
    steer_generated_only: bool = False
    """True: prompt positions stay unsteered; only generated tokens are steered."""
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    """Sampling settings."""
    system_prompt: str | None = None
    """System turn text; None keeps the model's own default system turn."""
    inspector_layer: int | None = None
    """Layer the inspector reads; None: the first feature's layer, else the middle layer."""
    vectors: str = DEFAULT_VECTORS
    """Pre-extracted vectors file, relative to base_dir."""
    backend: str = "hooks"
    """hooks (this library's request-scoped hooks) or nnsight (the same edits as nnsight interventions; needs nnsight)."""
    base_dir: Path = Path(".")
    """Folder relative paths resolve against (the YAML's folder)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        problems: list[str] = []
        _check_str(problems, "model", self.model, f"write model: <Hub id or local folder>, e.g. model: {DEFAULT_MODEL}")
        problems += _scalar_problems(self.device, self.dtype, self.mode, self.system_prompt, self.inspector_layer, self.vectors)
        _check_bool(problems, "steer_special_tokens", self.steer_special_tokens)
        _check_bool(problems, "steer_generated_only", self.steer_generated_only)
        if self.backend not in BACKENDS:
            problems.append(_problem("backend", f"must be one of {', '.join(BACKENDS)}", self.backend, "write backend: hooks"))
        problems += _cross_problems(self.features, self.sae, self.mode, vectors_given=True)
        _raise(problems)

    def feature_mode(self, f: FeatureSpec) -> str:
        """The mode `f` is steered with: its own, else the config's default."""
        return f.mode if f.mode is not None else self.mode

    def vectors_path(self) -> Path:
        """The vectors file, resolved against base_dir (`~` expanded)."""
        return Path(_resolve_local(self.vectors, self.base_dir))

    def sae_source(self) -> str:
        """The SAE source: local paths resolved against base_dir, Hub ids unchanged. Raises ConfigError without an SAE."""
        if self.sae is None:
            raise ConfigError("sae: no SAE is configured. Fix: add sae: {source: <Hub repo id or local folder>}")
        s = self.sae.source
        return _resolve_local(s, self.base_dir) if _is_local_path(s, self.base_dir) else s

    def model_source(self) -> str:
        """The model: local paths resolved against base_dir; Hub ids and `embedded:` names unchanged."""
        s = self.model
        if s.startswith("embedded:"):
            return s
        return _resolve_local(s, self.base_dir) if _is_local_path(s, self.base_dir) else s

    def resolve_inspector_layer(self, n_layers: int) -> int:
        """inspector_layer if set, else the first feature's layer, else the middle layer `n_layers // 2`."""
        if self.inspector_layer is not None:
            return self.inspector_layer
        if self.features:
            return self.features[0].layer
        return n_layers // 2

    def check_against(self, n_layers: int, d_sae: int | Mapping[int, int] | None = None) -> None:
        """Check layers and indices against the loaded model and SAE; raise ConfigError naming each bad entry.

        `d_sae` is the SAE width, one for all layers or per layer (a layer missing from the mapping is not
        checked); None skips index checks.
        """
        problems: list[str] = []
        for i, f in enumerate(self.features):
            if not 0 <= f.layer < n_layers:
                problems.append(
                    _problem(f"features[{i}].layer", f"is outside the model's layers [0, {n_layers})", f.layer, f"use a layer from 0 to {n_layers - 1}")
                )
                continue
            width = d_sae.get(f.layer) if isinstance(d_sae, Mapping) else d_sae
            if width is not None and not 0 <= f.index < width:
                problems.append(
                    _problem(
                        f"features[{i}].index",
                        f"is outside layer {f.layer}'s SAE features [0, {width})",
                        f.index,
                        f"use an index from 0 to {width - 1}",
                    )
                )
        if self.inspector_layer is not None and not 0 <= self.inspector_layer < n_layers:
            problems.append(
                _problem("inspector_layer", f"is outside the model's layers [0, {n_layers})", self.inspector_layer, f"use a layer from 0 to {n_layers - 1}, or null")
            )
        _raise(problems)

    def to_dict(self) -> dict[str, Any]:
        """Canonical form (no aliases); `parse_config(cfg.to_dict(), cfg.base_dir) == cfg`."""
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "sae": self.sae.to_dict() if self.sae is not None else None,
            "features": [f.to_dict() for f in self.features],
            "mode": self.mode,
            "steer_special_tokens": self.steer_special_tokens,
            "steer_generated_only": self.steer_generated_only,
            "generation": self.generation.to_dict(),
            "system_prompt": self.system_prompt,
            "inspector_layer": self.inspector_layer,
            "vectors": self.vectors,
            "backend": self.backend,
        }


def _scalar_problems(device: Any, dtype: Any, mode: Any, system_prompt: Any, inspector_layer: Any, vectors: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        problems.append(_problem("device", "must be auto, cpu, cuda, cuda:N or mps", device, "write device: auto"))
    if dtype not in DTYPES:
        problems.append(_problem("dtype", f"must be one of {', '.join(DTYPES)}", dtype, "write dtype: auto"))
    if mode not in MODES:
        problems.append(_problem("mode", f"must be one of {', '.join(MODES)}", mode, "write mode: add"))
    if system_prompt is not None and not isinstance(system_prompt, str):
        problems.append(_problem("system_prompt", "expected a string or null", system_prompt, "quote the text, or write null to keep the model's default"))
    if inspector_layer is not None:
        _check_int(problems, "inspector_layer", inspector_layer, 15)
    _check_str(problems, "vectors", vectors, f"write vectors: {DEFAULT_VECTORS}")
    return problems


def _cross_problems(features: tuple[FeatureSpec, ...], sae: SAESpec | None, mode: Any, vectors_given: bool) -> list[str]:
    """Duplicates, and features that need an SAE."""
    problems: list[str] = []
    seen: dict[tuple[int, int], int] = {}
    for i, f in enumerate(features):
        k = (f.layer, f.index)
        if k in seen:
            problems.append(
                f"features[{i}]: duplicates features[{seen[k]}] ({f.key}). Fix: keep one entry per (layer, index) and merge their strengths"
            )
        else:
            seen[k] = i
    if sae is None and features:
        if not vectors_given:
            problems.append(
                "features: given but there is no sae section and no vectors file. "
                "Fix: add sae: {source: <Hub repo id or local folder>}, or vectors: <file> with the pre-extracted vectors"
            )
        for i, f in enumerate(features):
            if (f.mode if f.mode is not None else mode) == "pin":
                problems.append(
                    f"features[{i}].mode: pin reads the SAE's encoder, but there is no sae section. "
                    "Fix: add sae: {source: ...}, or use mode add or clamp"
                )
    return problems


# ------------------------------------------------------------------------------------------- parsing

_TOP_KEYS = (
    "model",
    "device",
    "dtype",
    "sae",
    "features",
    "mode",
    "steer_special_tokens",
    "steer_generated_only",
    "generation",
    "system_prompt",
    "inspector_layer",
    "vectors",
    "backend",
)
_SAE_KEYS = ("source", "format", "path", "revision", "k")
_FEATURE_KEYS = ("layer", "index", "strength", "label", "mode", "range", "enabled")
_GEN_KEYS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")
_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """Equal values, not counting True == 1 as equal."""
    return (a == b and type(a) is type(b)) or (_is_number(a) and _is_number(b) and a == b)


def _yaml(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return "null" if v is None else repr(v)


def _strip_file_name(path: str) -> str:
    """`resid_post_layer_{layer}/trainer_1/ae.pt` -> `resid_post_layer_{layer}/trainer_1`."""
    head, sep, last = path.rstrip("/").rpartition("/")
    if "{layer}" not in last and last.lower().endswith(_WEIGHT_FILE_SUFFIXES):
        return head
    return path


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
            f"but {canonical_path} is {_yaml(canonical)}), got {_show(shown)}. Fix: remove {alias_name} and keep {canonical_path}"
        )
    return canonical


def _parse_feature(problems: list[str], i: int, entry: Any) -> FeatureSpec | None:
    prefix = f"features[{i}]"
    unknown: list[str] = []
    if isinstance(entry, (list, tuple)):
        if len(entry) not in (2, 3):
            problems.append(
                _problem(prefix, "expected [layer, feature_idx] or [layer, feature_idx, strength]", entry, "write [15, 21576, 8.0] or {layer: 15, index: 21576, strength: 8.0}")
            )
            return None
        layer, index = entry[0], entry[1]
        strength = entry[2] if len(entry) == 3 else 0.0
        label = mode = rng = None
        enabled = True
    elif isinstance(entry, Mapping):
        unknown = [_unknown_key(prefix + ".", k, _FEATURE_KEYS) for k in entry if k not in _FEATURE_KEYS]
        problems += unknown
        missing = [k for k in ("layer", "index") if k not in entry]
        for k in missing:
            problems.append(f"{prefix}.{k}: missing. Fix: add {k}: <whole number>, e.g. {{layer: 15, index: 21576, strength: 8.0}}")
        if missing:
            return None
        layer, index = entry["layer"], entry["index"]
        strength = entry.get("strength", 0.0)
        label, mode, rng = entry.get("label"), entry.get("mode"), entry.get("range")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(_problem(f"{prefix}.enabled", "expected true or false", enabled, "write enabled: false to start with the feature switched off"))
            return None
    else:
        problems.append(_problem(prefix, "expected a list [layer, feature_idx, strength] or a mapping", entry, "write [15, 21576, 8.0] or {layer: 15, index: 21576, strength: 8.0}"))
        return None
    found = _feature_problems(prefix, layer, index, strength, label, mode, rng)
    problems += found
    if found or unknown:
        return None
    return FeatureSpec(layer=layer, index=index, strength=strength, label=label, mode=mode, range=tuple(rng) if rng is not None else None, enabled=enabled)


def parse_config(data: Mapping, base_dir: Path = Path(".")) -> DemoConfig:
    """Validate a config mapping (canonical keys or the original project's aliases) into a DemoConfig.

    Raises ConfigError listing every problem found, one per line.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(_problem("(top level)", "expected a mapping of keys to values", data, f"start the file with model: {DEFAULT_MODEL}"))
    problems: list[str] = []
    for k in data:
        if k not in _TOP_KEYS and k not in ALIASES and k not in IGNORED_KEYS:
            problems.append(_unknown_key("", k, _TOP_KEYS, tuple(ALIASES)))

    def get(key: str) -> Any:
        return data.get(key, _MISSING)

    # model
    model = _merge(problems, "model", get("model"), "llm_name", get("llm_name"))
    if model is _MISSING:
        problems.append(f"model: missing. Fix: add model: <Hub id or local folder>, e.g. model: {DEFAULT_MODEL}")
    else:
        _check_str(problems, "model", model, f"write model: <Hub id or local folder>, e.g. model: {DEFAULT_MODEL}")

    # sae
    n_before = len(problems)
    sae = _parse_sae(problems, data)
    sae_ok = len(problems) == n_before

    # features
    features: list[FeatureSpec] = []
    raw_features = data.get("features")
    if raw_features is None:
        raw_features = []
    if not isinstance(raw_features, (list, tuple)):
        problems.append(_problem("features", "expected a list of features", raw_features, "write features: [[15, 21576, 8.0]], or [] for none"))
        raw_features = []
    n_feature_problems = len(problems)
    for i, entry in enumerate(raw_features):
        f = _parse_feature(problems, i, entry)
        if f is not None:
            features.append(f)
    features_ok = len(problems) == n_feature_problems

    # mode
    clamp = get("clamp_intensity")
    clamp_mode: Any = _MISSING
    if clamp is not _MISSING:
        if isinstance(clamp, bool):
            clamp_mode = "clamp" if clamp else "add"
        else:
            problems.append(_problem("clamp_intensity", "expected true or false", clamp, "write mode: clamp (or mode: add) instead"))
    n_before = len(problems)
    mode = _merge(problems, "mode", get("mode"), "clamp_intensity", clamp_mode, clamp)
    if mode is _MISSING:
        mode = "add"
    mode_ok = len(problems) == n_before and mode in MODES

    # positions
    steer_special = data.get("steer_special_tokens", True)
    _check_bool(problems, "steer_special_tokens", steer_special)
    steer_prompt = get("steer_prompt")
    gen_only_alias: Any = _MISSING
    if steer_prompt is not _MISSING:
        if isinstance(steer_prompt, bool):
            gen_only_alias = not steer_prompt
        else:
            problems.append(_problem("steer_prompt", "expected true or false", steer_prompt, "write steer_generated_only: false (or true) instead"))
    gen_only = _merge(problems, "steer_generated_only", get("steer_generated_only"), "steer_prompt", gen_only_alias, steer_prompt)
    if gen_only is _MISSING:
        gen_only = False
    else:
        _check_bool(problems, "steer_generated_only", gen_only)

    # generation
    generation = _parse_generation(problems, data)

    # the rest
    device = data.get("device", "auto")
    dtype = data.get("dtype", "auto")
    system_prompt = data.get("system_prompt")
    inspector_layer = data.get("inspector_layer")
    vectors_given = data.get("vectors") is not None
    vectors = data.get("vectors") if vectors_given else DEFAULT_VECTORS
    problems += _scalar_problems(device, dtype, mode, system_prompt, inspector_layer, vectors)
    if features_ok and sae_ok and mode_ok:
        problems += _cross_problems(tuple(features), sae, mode, vectors_given)
    backend = data.get("backend", "hooks")
    if backend not in BACKENDS:
        problems.append(_problem("backend", f"must be one of {', '.join(BACKENDS)}", backend, "write backend: hooks"))

    _raise(problems)
    return DemoConfig(
        model=model,
        device=device,
        dtype=dtype,
        sae=sae,
        features=tuple(features),
        mode=mode,
        steer_special_tokens=steer_special,
        steer_generated_only=gen_only,
        generation=generation,  # type: ignore[arg-type]
        system_prompt=system_prompt,
        inspector_layer=inspector_layer,
        vectors=vectors,
        backend=backend,
        base_dir=Path(base_dir),
    )


def _parse_sae(problems: list[str], data: Mapping) -> SAESpec | None:
    raw = data.get("sae")
    section: Mapping = {}
    if raw is not None:
        if not isinstance(raw, Mapping):
            problems.append(_problem("sae", "expected a mapping", raw, "write sae: {source: <Hub repo id or local folder>, path: ...}"))
            return None
        section = raw
        for k in section:
            if k not in _SAE_KEYS:
                problems.append(_unknown_key("sae.", k, _SAE_KEYS))

    source = _merge(problems, "sae.source", section.get("source", _MISSING), "sae_path", data.get("sae_path", _MISSING))

    prefix, suffix = data.get("sae_filename_prefix", _MISSING), data.get("sae_filename_suffix", _MISSING)
    alias_path: Any = _MISSING
    if prefix is not _MISSING or suffix is not _MISSING:
        parts_ok = True
        for name, v in (("sae_filename_prefix", prefix), ("sae_filename_suffix", suffix)):
            if v is not _MISSING and v is not None and not isinstance(v, str):
                problems.append(_problem(name, "expected a string", v, f'quote it: {name}: "resid_post_layer_"'))
                parts_ok = False
        if parts_ok:
            joined = f"{prefix if isinstance(prefix, str) else ''}{{layer}}{suffix if isinstance(suffix, str) else ''}"
            alias_path = _strip_file_name(joined).strip("/") or None
    path = _merge(problems, "sae.path", section.get("path", _MISSING), "sae_filename_prefix/sae_filename_suffix", alias_path)

    if raw is None and source is _MISSING:
        if alias_path is not _MISSING:
            problems.append("sae_path: missing, but sae_filename_prefix/sae_filename_suffix are given. Fix: add sae_path: <Hub repo id or local folder> (or sae: {source: ...})")
        return None
    if source is _MISSING:
        problems.append("sae.source: missing. Fix: add source: <Hub repo id or local folder>, e.g. andyrdt/saes-llama-3.1-8b-instruct")
        return None
    fmt = section.get("format", "auto")
    path = None if path is _MISSING else path
    revision = section.get("revision")
    k = section.get("k")
    found = _sae_problems("sae", source, fmt, path, revision, k)
    if found:
        problems += found
        return None
    return SAESpec(source=source, format=fmt, path=path, revision=revision, k=k)


def _parse_generation(problems: list[str], data: Mapping) -> GenerationSettings | None:
    raw = data.get("generation")
    section: Mapping = {}
    if raw is not None:
        if not isinstance(raw, Mapping):
            problems.append(_problem("generation", "expected a mapping", raw, "write generation: {max_new_tokens: 256, temperature: 0.7}"))
            return None
        section = raw
        for k in section:
            if k not in _GEN_KEYS:
                problems.append(_unknown_key("generation.", k, _GEN_KEYS))
    defaults = GenerationSettings()
    values: dict[str, Any] = {}
    for k in _GEN_KEYS:
        v = _merge(problems, f"generation.{k}", section.get(k, _MISSING), k, data.get(k, _MISSING))
        values[k] = getattr(defaults, k) if v is _MISSING else v
    found = _generation_problems("generation", **values)
    if found:
        problems += found
        return None
    return GenerationSettings(**values)


# ------------------------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (plain YAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # let the base constructor report an unhashable key
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}; keep only one", mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path) -> DemoConfig:
    """Read and validate a YAML config; relative paths in it resolve against its folder.

    A missing file, malformed YAML (reported with line and column) or an invalid config raises ConfigError
    whose message starts with the file name.
    """
    p = Path(path).expanduser()
    name = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found (looked in {p.resolve()}). Fix: check the path, or copy demo.yaml next to it", source=name) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the config file: {e}. Fix: check the path and that it is a UTF-8 text file", source=name) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ConfigError(f"malformed YAML at {where}: {detail}. Fix: correct the YAML syntax there", source=name) from None
    if data is None:
        raise ConfigError(f"the file is empty. Fix: add at least model: {DEFAULT_MODEL}", source=name)
    try:
        return parse_config(data, base_dir=p.resolve().parent)
    except ConfigError as e:
        raise ConfigError(list(e.problems), source=name) from None
