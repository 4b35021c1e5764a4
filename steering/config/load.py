"""Reading demo.yaml: YAML text -> mapping -> `DemoConfig`, with every problem in one `ConfigError`.

The parser checks only what the dataclasses cannot see: the mapping's shape (unknown or missing keys,
sections that are not mappings, feature entries of the wrong form) and whether a vectors file was written
out. Field values are checked once, by the dataclasses: the parser builds each one, and a construction
that fails adds its problems to the list instead of stopping the parse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from steering.config.legacy import ALIASES, LEGACY_KEYS, to_canonical
from steering.config.problems import ConfigError, problem, raise_if, unknown_key
from steering.config.schema import (
    DEFAULT_MODEL,
    DEFAULT_VECTORS,
    DemoConfig,
    FeatureSpec,
    GenerationSettings,
    SAESpec,
    VLLMSettings,
)

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
    "vllm",
    "servers",
)
_SCALAR_KEYS = ("model", "device", "dtype", "mode", "steer_special_tokens", "steer_generated_only", "system_prompt", "inspector_layer",
                "backend", "servers")
_SAE_KEYS = ("source", "format", "path", "revision", "k")
_FEATURE_KEYS = ("layer", "index", "strength", "label", "mode", "range", "enabled", "condition")
_VLLM_KEYS = ("tensor_parallel_size", "max_model_len", "max_num_seqs", "kv_cache_gib", "enable_prefix_caching")
_GEN_KEYS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")
_FEATURE_EXAMPLE = "write [15, 21576, 8.0] or {layer: 15, index: 21576, strength: 8.0}"

_T = TypeVar("_T")
_SECRET_KEYS = ("api_key", "apikey", "key", "token", "hf_token", "password")
"""Keys a config could be tempted to hold a secret under: refused with the environment variable to use instead."""


def _secret(key: Any) -> str:
    """A config file is committed (a Space shows it): secrets go in environment variables (a Space's secrets)."""
    var = "HF_TOKEN" if str(key).lower() == "hf_token" else "STEERING_API_KEY"
    return (f"{key}: a key does not belong in the config file (it is committed, and a Space shows its files). "
            f"Fix: remove it and set the environment variable {var} instead (on a Space: a secret).")


def _secrets_in_urls(servers: Any) -> list[str]:
    """A server URL with a user or password in it (http://user:key@host) is a key in the file too."""
    from urllib.parse import urlsplit

    if not isinstance(servers, list):
        return []
    return [f"servers[{i}]: the URL carries a user or password. Fix: write the URL without it and set the "
            "environment variable STEERING_API_KEY to the servers' key instead (on a Space: a secret)."
            for i, url in enumerate(servers) if isinstance(url, str) and "@" in urlsplit(url).netloc]


def parse_config(data: Mapping, base_dir: Path = Path(".")) -> DemoConfig:
    """Validate a config mapping (canonical keys or the original project's aliases) into a DemoConfig.

    Raises ConfigError listing every problem found, one per line.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(problem("(top level)", "expected a mapping of keys to values", data, f"start the file with model: {DEFAULT_MODEL}"))
    problems = [_secret(k) if str(k).lower() in _SECRET_KEYS else unknown_key("", k, _TOP_KEYS, tuple(ALIASES))
                for k in data if k not in _TOP_KEYS and k not in LEGACY_KEYS]
    problems += _secrets_in_urls(data.get("servers"))
    data, legacy_problems = to_canonical(data)
    problems += legacy_problems
    if "model" not in data:
        problems.append(f"model: missing. Fix: add model: <Hub id or local folder>, e.g. model: {DEFAULT_MODEL}")

    before = len(problems)
    sae = _parse_sae(problems, data.get("sae"))
    features = _parse_features(problems, data.get("features"))
    parts_ok = len(problems) == before
    generation = _parse_generation(problems, data.get("generation"))
    vectors = data.get("vectors")
    vllm = _parse_vllm(problems, data.get("vllm"))

    # Stand-ins for parts already reported, so DemoConfig reports only its own fields: no features when
    # an entry or the SAE failed (their positions and the pin check would be wrong), and the defaults.
    scalars = {k: data[k] for k in _SCALAR_KEYS if k in data}
    scalars.setdefault("model", DEFAULT_MODEL)
    config = _build(
        problems,
        DemoConfig,
        **scalars,
        sae=sae,
        features=features if parts_ok else (),
        generation=generation or GenerationSettings(),
        vllm=vllm or VLLMSettings(),
        vectors=DEFAULT_VECTORS if vectors is None else vectors,
        base_dir=Path(base_dir),
    )
    if parts_ok and features and sae is None and vectors is None:
        problems.append(
            "features: given but there is no sae section and no vectors file. "
            "Fix: add sae: {source: <Hub repo id or local folder>}, or vectors: <file> with the pre-extracted vectors"
        )
    raise_if(problems)
    assert config is not None
    return config


def _build(problems: list[str], make: Callable[..., _T], /, rename: tuple[str, str] | None = None, **fields: Any) -> _T | None:
    """`make(**fields)`, or None with its problems added; `rename` (old, new) re-roots their key paths."""
    try:
        return make(**fields)
    except ConfigError as e:
        found = list(e.problems)
        if rename is not None:
            old, new = rename
            found = [new + p[len(old) :] if p.startswith(old + ".") else p for p in found]
        problems += found
        return None


def _parse_sae(problems: list[str], raw: Any) -> SAESpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(problem("sae", "expected a mapping", raw, "write sae: {source: <Hub repo id or local folder>, path: ...}"))
        return None
    problems += [unknown_key("sae.", k, _SAE_KEYS) for k in raw if k not in _SAE_KEYS]
    if "source" not in raw:
        problems.append("sae.source: missing. Fix: add source: <Hub repo id or local folder>, e.g. andyrdt/saes-llama-3.1-8b-instruct")
        return None
    return _build(problems, SAESpec, **{k: raw[k] for k in _SAE_KEYS if k in raw})


def _parse_features(problems: list[str], raw: Any) -> tuple[FeatureSpec, ...]:
    """The entries that built; any that did not has added its problems."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        problems.append(problem("features", "expected a list of features", raw, "write features: [[15, 21576, 8.0]], or [] for none"))
        return ()
    built = (_parse_feature(problems, i, entry) for i, entry in enumerate(raw))
    return tuple(f for f in built if f is not None)


def _parse_feature(problems: list[str], i: int, entry: Any) -> FeatureSpec | None:
    """A list `[layer, index]` / `[layer, index, strength]` or a mapping of FeatureSpec's fields."""
    prefix = f"features[{i}]"
    unknown: list[str] = []
    if isinstance(entry, (list, tuple)):
        if len(entry) not in (2, 3):
            problems.append(problem(prefix, "expected [layer, feature_idx] or [layer, feature_idx, strength]", entry, _FEATURE_EXAMPLE))
            return None
        fields = dict(zip(("layer", "index", "strength"), entry))
    elif isinstance(entry, Mapping):
        unknown = [unknown_key(prefix + ".", k, _FEATURE_KEYS) for k in entry if k not in _FEATURE_KEYS]
        problems += unknown
        missing = [k for k in ("layer", "index") if k not in entry]
        for k in missing:
            problems.append(f"{prefix}.{k}: missing. Fix: add {k}: <whole number>, e.g. {{layer: 15, index: 21576, strength: 8.0}}")
        if missing:
            return None
        fields = {k: entry[k] for k in _FEATURE_KEYS if k in entry}
    else:
        problems.append(problem(prefix, "expected a list [layer, feature_idx, strength] or a mapping", entry, _FEATURE_EXAMPLE))
        return None
    feature = _build(problems, FeatureSpec, rename=("feature", prefix), **fields)
    return None if unknown else feature


def _parse_section(problems: list[str], raw: Any, name: str, make: Callable[..., _T], keys: tuple[str, ...],
                   example: str) -> _T | None:
    """A nested settings mapping (`generation:`, `vllm:`): absent is the defaults; unknown keys are problems."""
    if raw is None:
        return make()
    if not isinstance(raw, Mapping):
        problems.append(problem(name, "expected a mapping", raw, f"write {name}: {example}"))
        return None
    problems += [unknown_key(f"{name}.", k, keys) for k in raw if k not in keys]
    return _build(problems, make, **{k: raw[k] for k in keys if k in raw})


def _parse_generation(problems: list[str], raw: Any) -> GenerationSettings | None:
    return _parse_section(problems, raw, "generation", GenerationSettings, _GEN_KEYS, "{max_new_tokens: 256, temperature: 0.7}")


def _parse_vllm(problems: list[str], raw: Any) -> VLLMSettings | None:
    return _parse_section(problems, raw, "vllm", VLLMSettings, _VLLM_KEYS, "{tensor_parallel_size: 1, max_model_len: 4096}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (plain YAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor reports an unhashable key
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}; keep only one", key_node.start_mark
            )
        seen.add(key)
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
        problem_text = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        detail = f"{context}: {problem_text}" if context else problem_text
        raise ConfigError(f"malformed YAML at {where}: {detail}. Fix: correct the YAML syntax there", source=name) from None
    if data is None:
        raise ConfigError(f"the file is empty. Fix: add at least model: {DEFAULT_MODEL}", source=name)
    try:
        return parse_config(data, base_dir=p.resolve().parent)
    except ConfigError as e:
        raise ConfigError(list(e.problems), source=name) from None
