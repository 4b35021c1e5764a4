"""Pre-extracted steering vectors: `steering_vectors.pt`, so steering never loads a whole SAE.

The file is a plain dict of tensors, strings and numbers (loads with `weights_only=True`):
`{"format": "steering-vectors/1", "model": str, "sae": {source, format, path, revision},
  "vectors": [{"layer", "index", "direction" (unit, float32), "norm", "rule"}]}`
where `rule` holds the feature's encoder data for pin mode, or None when the SAE's activation
rule is not per-feature (TopK), in which case pin needs the SAE itself."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor

from steering.config import DemoConfig, FeatureSpec
from steering.keys import FeatureKey
from steering.sae import FeatureRule, open_sae, resolve_sae_folder

FORMAT = "steering-vectors/1"


class VectorsError(RuntimeError):
    """A vectors file that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class SteeringVector:
    """One feature's unit decoder direction, its raw norm, and (pin mode) its encoder rule."""

    layer: int
    index: int
    direction: Tensor  # (d,) unit, float32
    norm: float
    rule: FeatureRule | None = None

    @property
    def key(self) -> FeatureKey:
        return FeatureKey(self.layer, self.index)


@dataclass
class VectorSet:
    """Vectors plus the model and SAE they were extracted for (what staleness is judged on)."""

    model: str
    sae: dict
    vectors: dict[tuple[int, int], SteeringVector] = field(default_factory=dict)

    def get(self, layer: int, index: int) -> SteeringVector | None:
        return self.vectors.get((layer, index))


def sae_identity(config: DemoConfig) -> dict:
    """The SAE as the config names it; compared, as written, against a vectors file's record."""
    if config.sae is None:
        return {}
    return config.sae.to_dict()


def extract_vectors(
    config: DemoConfig,
    features: Iterable[FeatureSpec] | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    d_model: int | None = None,
) -> VectorSet:
    """Read just the needed decoder rows (and encoder rows for pin) from the config's SAE.

    With `d_model`, an SAE of another width is refused before anything is read.
    """
    if config.sae is None:
        raise VectorsError("demo.yaml has no `sae:` section, so there is no SAE to extract steering vectors from")
    wanted = list(config.features if features is None else features)
    out = VectorSet(model=config.model, sae=sae_identity(config))
    by_layer: dict[int, list[int]] = {}
    for f in wanted:
        by_layer.setdefault(f.layer, [])
        if f.index not in by_layer[f.layer]:
            by_layer[f.layer].append(f.index)
    for layer, indices in sorted(by_layer.items()):
        folder = resolve_sae_folder(config.sae_source(), config.sae.subfolder(layer), config.sae.revision)
        handle = open_sae(folder, config.sae.format, k=config.sae.k)
        if d_model is not None:
            handle.check_width(d_model)
        bad = [i for i in indices if not 0 <= i < handle.d_sae]
        if bad:
            raise VectorsError(f"feature index(es) {bad} at layer {layer} are outside the SAE in {folder} (0..{handle.d_sae - 1})")
        log(f"extracting {len(indices)} vector(s) at layer {layer} from {folder}")
        rows = handle.decoder_rows(indices).float()  # (n, d)
        rules = _rules_or_none(handle, indices)
        for j, index in enumerate(indices):
            norm = float(rows[j].norm())
            if not norm > 0:
                raise VectorsError(f"feature {index} at layer {layer} has a zero decoder row: it cannot steer")
            out.vectors[(layer, index)] = SteeringVector(layer, index, rows[j] / norm, norm, rules[j])
    return out


def _rules_or_none(handle, indices: list[int]) -> list[FeatureRule | None]:
    try:
        return list(handle.feature_rules(indices))
    except ValueError:  # TopK-style rules depend on every feature: pin will use the full SAE
        return [None] * len(indices)


def _rule_to_dict(rule: FeatureRule | None) -> dict | None:
    if rule is None:
        return None
    return {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)}


def save_vectors(vectors: VectorSet, path: str | Path) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves a half-written file."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": vectors.model,
        "sae": dict(vectors.sae),
        "vectors": [
            {"layer": v.layer, "index": v.index, "direction": v.direction.float().contiguous(), "norm": v.norm, "rule": _rule_to_dict(v.rule)}
            for v in vectors.vectors.values()
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_vectors(path: str | Path) -> VectorSet:
    """Load with `weights_only=True` (a file that pickles code is refused) and check its structure."""
    path = Path(path)
    fix = f"delete {path} and run `python -m steering.cli.extract` to rebuild it"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise VectorsError(f"{path} cannot be read as a steering vectors file ({type(exc).__name__}: {exc}); {fix}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise VectorsError(f"{path} is not a {FORMAT} file; {fix}")
    out = VectorSet(model=str(data.get("model", "")), sae=dict(data.get("sae") or {}))
    for i, entry in enumerate(data.get("vectors", [])):
        try:
            direction = entry["direction"].float()
            rule = FeatureRule(**entry["rule"]) if entry.get("rule") else None
            v = SteeringVector(int(entry["layer"]), int(entry["index"]), direction, float(entry["norm"]), rule)
        except Exception as exc:
            raise VectorsError(f"{path}: entry {i} is malformed ({type(exc).__name__}: {exc}); {fix}") from exc
        if direction.ndim != 1 or not torch.isfinite(direction).all():
            raise VectorsError(f"{path}: entry {i} (layer {v.layer}, feature {v.index}) has a bad direction; {fix}")
        out.vectors[v.key] = v
    return out


def staleness(vectors: VectorSet, config: DemoConfig, features: Iterable[FeatureSpec] | None = None) -> list[str]:
    """Reasons the file does not serve this config (empty when it does)."""
    reasons = []
    if vectors.model != config.model:
        reasons.append(f"it was extracted for model {vectors.model!r}, but the config uses {config.model!r}")
    if config.sae is not None and vectors.sae != sae_identity(config):
        reasons.append(f"it was extracted from SAE {vectors.sae}, but the config uses {sae_identity(config)}")
    missing = [str(f.key) for f in (config.features if features is None else features) if vectors.get(f.layer, f.index) is None]
    if missing:
        reasons.append(f"it lacks feature(s) {', '.join(missing)}")
    return reasons


def vectors_for_config(
    config: DemoConfig, log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr), d_model: int | None = None
) -> VectorSet:
    """The config's vectors: from its vectors file when that matches, else extracted from the SAE.

    Says which happened and why; raises with the fix when neither source can serve.
    """
    path = config.vectors_path()
    if not config.features:
        return VectorSet(model=config.model, sae=sae_identity(config))
    reasons = [f"{path} does not exist"]
    if path.exists():
        try:
            vectors = load_vectors(path)
        except VectorsError as exc:
            if config.sae is None:
                raise
            reasons = [str(exc)]
        else:
            reasons = staleness(vectors, config)
            if not reasons:
                log(f"using steering vectors from {path}")
                return vectors
    why = "; ".join(reasons)
    if config.sae is None:
        raise VectorsError(f"cannot steer: {why}, and the config names no SAE to extract from. Add an `sae:` section or ship a matching {path.name}.")
    log(f"{path.name} is stale or missing ({why}): extracting the vectors from the SAE now. "
        f"Run `python -m steering.cli.extract` to save them and skip this step next time.")
    return extract_vectors(config, log=log, d_model=d_model)
