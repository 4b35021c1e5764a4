"""The configuration's dataclasses; each validates its own fields once, in `__post_init__`.

A dataclass raises one `ConfigError` listing every problem of its fields (paths `feature.<field>`,
`sae.<field>`, `generation.<field>`, or the top-level key), checked on the values as given and only then
normalised (floats, tuples), so messages echo what the user wrote. The YAML parser builds these and
gathers their problems rather than checking anything a second time.

Decisions:
- Features without an `sae` are allowed only with a vectors file (it carries their decoder directions);
  `pin` reads the SAE's encoder, so a pinned feature always needs `sae`.
- A feature's `range` is its slider range; a strength outside its own range is an error.
- Duplicate features (same layer and index) are an error: merge them into one entry.

Longer than 300 lines: the four dataclasses are one schema, each with its field docstrings and its one
validation beside the fields it checks; split apart, the schema would no longer read as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.config.generation import GenerationSettings
from steering.config.problems import (
    ConfigError,
    check_bool,
    check_finite,
    check_int,
    check_str,
    int_fix,
    is_int,
    is_number,
    problem,
    raise_if,
)
from steering.backends.registry import BACKENDS
from steering.config.modes import MODES, Condition, condition_problems, strength_problem, to_condition
from steering.keys import FeatureKey
from steering.sae.names import SAE_FORMATS

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Values of `dtype`."""

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
"""The embedded default model's name, as `model` spells it."""

DEFAULT_VECTORS = "steering_vectors.pt"
"""Default pre-extracted vectors file, relative to the YAML's folder."""

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_LOCAL_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")


@dataclass(frozen=True)
class FeatureSpec:
    """One SAE feature to steer with."""

    layer: int
    """Decoder layer whose output (resid_post) is steered, 0-based."""
    index: int
    """Feature index in that layer's SAE, 0-based."""
    strength: float = 0.0
    """Steering strength s, in the mode's unit (`MODE_INFO[mode].unit`): an amount or component in residual units,
    an SAE activation (pin) or an angle in degrees (angular)."""
    label: str | None = None
    """Human-readable name shown in the app; None shows `feature {index} @ layer {layer}`."""
    mode: str | None = None
    """This feature's mode (one of MODES); None uses the config's top-level `mode`."""
    range: tuple[float, float] | None = None
    """Slider range (min, max) for the strength; the strength must lie inside it."""
    enabled: bool = True
    """False: listed with its recommended strength, but switched off until someone turns it on."""
    condition: Condition | None = None
    """Steer only where another feature fires above a threshold (`{feature: "L15:123", above: 2.0}`); None: everywhere."""

    def __post_init__(self) -> None:
        raise_if(self._problems())
        object.__setattr__(self, "strength", float(self.strength))
        if self.range is not None:
            object.__setattr__(self, "range", (float(self.range[0]), float(self.range[1])))
        if self.condition is not None:
            object.__setattr__(self, "condition", to_condition(self.condition))

    def _problems(self) -> list[str]:
        """Named `feature.<field>`; the parser renames them to `features[i].<field>`."""
        problems: list[str] = []
        check_int(problems, "feature.layer", self.layer, 15)
        check_int(problems, "feature.index", self.index, 21576)
        strength_ok = check_finite(problems, "feature.strength", self.strength, 8.0)
        if self.label is not None and not isinstance(self.label, str):
            problems.append(problem("feature.label", "expected a string or null", self.label, 'quote it: label: "Eiffel Tower"'))
        if self.mode is not None and self.mode not in MODES:
            problems.append(problem("feature.mode", f"must be one of {', '.join(MODES)}", self.mode, f"write mode: {MODES[0]}, or leave it out to use the top-level mode"))
        if self.range is not None:
            problems += _range_problems(self.range, self.strength if strength_ok else None)
        if strength_ok and self.mode in MODES:
            problems += mode_strength_problems("feature", self.mode, self.strength, self.range)
        check_bool(problems, "feature.enabled", self.enabled, "write enabled: false to start with the feature switched off")
        if self.condition is not None:
            problems += condition_problems(self.condition, "feature.condition", self.layer if is_int(self.layer) else None)
        return problems

    @property
    def key(self) -> FeatureKey:
        """Stable identifier; `str()` and f-strings give `L{layer}:{index}`."""
        return FeatureKey(self.layer, self.index)

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
        if self.condition is not None:
            d["condition"] = self.condition.to_dict()
        return d


def mode_strength_problems(path: str, mode: str, strength: float, rng: tuple[float, float] | None) -> list[str]:
    """A strength (and slider range) outside what `mode` accepts: angles lie in 0..180 degrees."""
    problems = []
    what = strength_problem(mode, strength)
    if what is not None:
        problems.append(problem(f"{path}.strength", what, strength, "use an angle such as 80 (90 removes the feature)"))
    if isinstance(rng, (list, tuple)) and len(rng) == 2 and all(map(is_number, rng)) and (strength_problem(mode, rng[0]) or strength_problem(mode, rng[1])):
        problems.append(problem(f"{path}.range", f"must lie within the angles mode {mode} accepts (0 to 180)", rng,
                                "write range: [0, 180] or narrower"))
    return problems


def _range_problems(rng: Any, strength: Any) -> list[str]:
    """A feature's `range`, and its strength against it; `strength` None: itself invalid, not compared."""
    if not isinstance(rng, (list, tuple)) or len(rng) != 2:
        return [problem("feature.range", "expected two numbers [min, max]", rng, "write range: [0, 20]")]
    problems: list[str] = []
    lo_ok = check_finite(problems, "feature.range[0]", rng[0], 0.0)
    hi_ok = check_finite(problems, "feature.range[1]", rng[1], 20.0)
    if not (lo_ok and hi_ok):
        return problems
    if not rng[0] < rng[1]:
        problems.append(problem("feature.range", "min must be less than max", rng, f"write range: [{rng[1]}, {rng[0]}] or widen it"))
    elif strength is not None and not rng[0] <= strength <= rng[1]:
        what = f"lies outside its own range [{rng[0]}, {rng[1]}]"
        problems.append(problem("feature.strength", what, strength, f"use a strength between {rng[0]} and {rng[1]}, or widen range"))
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
        raise_if(self._problems())

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if self.k is not None:
            check_int(problems, "sae.k", self.k, 50, minimum=1)
        check_str(problems, "sae.source", self.source, "write source: <Hub repo id or local folder>, e.g. andyrdt/saes-llama-3.1-8b-instruct")
        if self.format not in SAE_FORMATS:
            problems.append(problem("sae.format", f"must be one of {', '.join(SAE_FORMATS)}", self.format, "write format: auto to detect it from the files"))
        check_str(problems, "sae.path", self.path, 'write path: "resid_post_layer_{layer}/trainer_1", or leave it out', optional=True)
        check_str(problems, "sae.revision", self.revision, 'quote it: revision: "main", or leave it out', optional=True)
        return problems

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


@dataclass(frozen=True)
class VLLMSettings:
    """The serving engine's options (`backend: vllm`); ignored by the other backends."""

    tensor_parallel_size: int = 1
    """GPUs one model is split over (tensor parallel), >= 1."""
    max_model_len: int = 4096
    """Longest conversation in tokens (prompt and answer), >= 16."""
    max_num_seqs: int = 16
    """Requests decoded together at most, >= 1."""
    kv_cache_gib: int | None = None
    """KV-cache size on a CPU host (VLLM_CPU_KVCACHE_SPACE, whole GiB); None: vLLM's default (4)."""
    enable_prefix_caching: bool = True
    """Reuse KV blocks of shared prefixes; steered requests share only with the same steering."""

    def __post_init__(self) -> None:
        raise_if(self._problems())

    def _problems(self) -> list[str]:
        problems: list[str] = []
        check_int(problems, "vllm.tensor_parallel_size", self.tensor_parallel_size, 1, minimum=1)
        check_int(problems, "vllm.max_model_len", self.max_model_len, 4096, minimum=16)
        check_int(problems, "vllm.max_num_seqs", self.max_num_seqs, 16, minimum=1)
        if self.kv_cache_gib is not None:
            check_int(problems, "vllm.kv_cache_gib", self.kv_cache_gib, 1, minimum=1)
        if not isinstance(self.enable_prefix_caching, bool):
            problems.append(problem("vllm.enable_prefix_caching", "expected true or false", self.enable_prefix_caching,
                                    "write enable_prefix_caching: true"))
        return problems

    def to_dict(self) -> dict:
        return dict(self.__dict__)


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
    """A name in `steering.backends.registry.BACKENDS`: hooks (this library's request-scoped hooks), nnsight (the
    same edits as nnsight interventions; needs nnsight), vllm (the same edits inside vLLM; needs
    requirements-vllm-cpu.txt or vllm) or remote (steering servers)."""
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    """The serving engine's options, for backend: vllm."""
    servers: tuple[str, ...] = ()
    """Steering servers (`python -m steering.serve`) the app uses with backend: remote, by URL."""
    base_dir: Path = Path(".")
    """Folder relative paths resolve against (the YAML's folder)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        if isinstance(self.servers, list):
            object.__setattr__(self, "servers", tuple(self.servers))
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        raise_if(self._problems())

    def _problems(self) -> list[str]:
        """The top-level fields, then what only the whole config shows: duplicate features, pin without an SAE."""
        problems: list[str] = []
        check_str(problems, "model", self.model, f"write model: <Hub id or local folder>, e.g. model: {DEFAULT_MODEL}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            problems.append(problem("device", "must be auto, cpu, cuda, cuda:N or mps", self.device, "write device: auto"))
        if self.dtype not in DTYPES:
            problems.append(problem("dtype", f"must be one of {', '.join(DTYPES)}", self.dtype, "write dtype: auto"))
        if self.mode not in MODES:
            problems.append(problem("mode", f"must be one of {', '.join(MODES)}", self.mode, "write mode: add"))
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            problems.append(problem("system_prompt", "expected a string or null", self.system_prompt, "quote the text, or write null to keep the model's default"))
        if self.inspector_layer is not None:
            check_int(problems, "inspector_layer", self.inspector_layer, 15)
        check_str(problems, "vectors", self.vectors, f"write vectors: {DEFAULT_VECTORS}")
        check_bool(problems, "steer_special_tokens", self.steer_special_tokens)
        check_bool(problems, "steer_generated_only", self.steer_generated_only)
        if not isinstance(self.backend, str) or self.backend not in BACKENDS:
            problems.append(problem("backend", f"must be one of {', '.join(BACKENDS)}", self.backend, "write backend: hooks"))
        if not isinstance(self.servers, tuple) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                           for u in self.servers):
            problems.append(problem("servers", "expected a list of http(s) URLs", self.servers,
                                    "write servers: [http://127.0.0.1:8000]"))
        elif self.backend == "remote" and not self.servers:
            problems.append("servers: backend: remote needs at least one. Fix: add servers: [http://127.0.0.1:8000], "
                            "where python -m steering.serve runs")
        seen: dict[FeatureKey, int] = {}
        for i, f in enumerate(self.features):
            if f.key in seen:
                problems.append(f"features[{i}]: duplicates features[{seen[f.key]}] ({f.key}). Fix: keep one entry per (layer, index) and merge their strengths")
            else:
                seen[f.key] = i
        for i, f in enumerate(self.features):
            if f.mode is None and self.mode in MODES and is_number(f.strength):
                problems += mode_strength_problems(f"features[{i}]", self.mode, f.strength, f.range)
        if self.sae is None:
            for i, f in enumerate(self.features):
                if self.feature_mode(f) == "pin":
                    problems.append(
                        f"features[{i}].mode: pin reads the SAE's encoder, but there is no sae section. Fix: add sae: {{source: ...}}, or use mode add or clamp"
                    )
                if f.condition is not None:
                    problems.append(
                        f"features[{i}].condition: a condition reads a feature by the SAE's encoder, but there is no sae section. "
                        "Fix: add sae: {source: ...}, or remove the condition"
                    )
        return problems

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
                problems.append(problem(f"features[{i}].layer", f"is outside the model's layers [0, {n_layers})", f.layer, f"use a layer from 0 to {n_layers - 1}"))
                continue
            width = d_sae.get(f.layer) if isinstance(d_sae, Mapping) else d_sae
            if width is not None and not 0 <= f.index < width:
                what = f"is outside layer {f.layer}'s SAE features [0, {width})"
                problems.append(problem(f"features[{i}].index", what, f.index, f"use an index from 0 to {width - 1}"))
        if self.inspector_layer is not None and not 0 <= self.inspector_layer < n_layers:
            what = f"is outside the model's layers [0, {n_layers})"
            problems.append(problem("inspector_layer", what, self.inspector_layer, f"use a layer from 0 to {n_layers - 1}, or null"))
        raise_if(problems)

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
            "vllm": self.vllm.to_dict(),
            "servers": list(self.servers),
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
