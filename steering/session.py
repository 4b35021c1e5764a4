"""`Steerer`: a loaded model with its steering vectors, for notebooks, the console and the app.

It holds only what every request shares (model, tokenizer, vectors, lazily loaded SAEs).
Strengths, mode and settings are arguments of each call, so one `Steerer` serves many
visitors at once and a strength changes between turns without reloading anything.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from . import inspector
from .config import DemoConfig, FeatureSpec, GenerationSettings, load_config
from .batching import BatchedGeneration, Batcher
from .generation import Generation
from .hooks import Edit, SteeringPlan, attach, steering
from .models import encode_chat, load_model, num_layers, special_token_ids
from .sae import SAE, TopKFeature
from .small_batch import speed_up_small_batches
from .sae_formats import open_sae, resolve_sae_folder
from .vectors import SteeringVector, VectorSet, extract_vectors, vectors_for_config

NORM_TEXTS = (
    "The weather was mild, so we walked to the market and bought bread, cheese and a few apples.",
    "To install the package, run the command below and then restart your terminal.",
    "She asked whether the meeting could be moved to Thursday afternoon instead.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "I'm sorry to hear that. Would you like some tips on getting better sleep?",
    "The committee approved the budget after a long debate about school funding.",
)
Strengths = Mapping[str, float | None] | Sequence[float | None] | None
Messages = Sequence[Mapping[str, str]]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


class Steerer:
    """Chat with, steer and inspect one model as a config describes it."""

    def __init__(self, config: DemoConfig, model, tokenizer, vectors: VectorSet, log: Callable[[str], None] = _stderr):
        self.config, self.model, self.tokenizer, self.vectors, self.log = config, model, tokenizer, vectors, log
        self.n_layers = num_layers(model)
        self.features: list[FeatureSpec] = list(config.features)
        self.special_ids = special_token_ids(tokenizer)
        self.notice: str | None = None
        if not getattr(tokenizer, "chat_template", None):
            self.notice = (f"{config.model} has no chat template: chatting as plain completion "
                           "(a 'User: ... / Assistant:' transcript), so answers may be rougher than a chat model's.")
            log(self.notice)
        self._saes: dict[int, SAE] = {}
        self._norms: dict[int, float] = {}
        self._lock = threading.Lock()
        self.batcher: Batcher | None = None
        attach(model)

    @classmethod
    def from_config(cls, config: str | Path | DemoConfig = "demo.yaml", log: Callable[[str], None] = _stderr, **overrides) -> "Steerer":
        """Load the config's model and vectors; `overrides` replace config fields (e.g. device="cpu")."""
        if not isinstance(config, DemoConfig):
            config = load_config(config)
        if overrides:
            config = replace(config, **overrides)
        model, tokenizer = load_model(config.model_source(), device=config.device, dtype=config.dtype)
        config.check_against(num_layers(model))
        vectors = vectors_for_config(config, log=log, d_model=model.config.hidden_size)
        return cls(config, model, tokenizer, vectors, log)

    # ---- steering -------------------------------------------------------------------------

    def default_strengths(self) -> dict[str, float | None]:
        """Each feature's configured strength, or None (off) for features listed with `enabled: false`."""
        return {f.key: f.strength if f.enabled else None for f in self.features}

    def feature(self, key: str | int) -> FeatureSpec:
        """A feature by key (`L15:123`), by position, or by label."""
        if isinstance(key, int):
            if not 0 <= key < len(self.features):
                raise KeyError(f"there is no feature #{key}; features are numbered 0..{len(self.features) - 1}")
            return self.features[key]
        for f in self.features:
            if key in (f.key, f.label):
                return f
        known = ", ".join(f.key for f in self.features) or "none"
        raise KeyError(f"unknown feature {key!r}; known: {known}")

    def vector(self, layer: int, index: int) -> SteeringVector:
        """The steering vector of a feature: from the vectors file, else read once from the SAE and kept."""
        found = self.vectors.get(layer, index)
        if found is not None:
            return found
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is outside this model (0..{self.n_layers - 1})")
        with self._lock:
            found = self.vectors.get(layer, index)
            if found is None:
                extracted = extract_vectors(self.config, [FeatureSpec(layer=layer, index=index)], log=self.log, d_model=self.model.config.hidden_size)
                self.vectors.vectors.update(extracted.vectors)
                found = extracted.get(layer, index)
        return found

    def add_feature(self, layer: int, index: int, strength: float = 0.0, label: str | None = None, mode: str | None = None) -> FeatureSpec:
        """Add a feature to this Steerer's list for everyone using it (the console); per-visitor
        features go to `plan(features=...)` instead."""
        spec = FeatureSpec(layer=layer, index=index, strength=strength, label=label, mode=mode)
        self.vector(layer, index)
        with self._lock:
            if any(f.key == spec.key for f in self.features):
                return self.feature(spec.key)
            self.features.append(spec)
        return spec

    def _resolve_strengths(self, strengths: Strengths, features: Sequence[FeatureSpec]) -> dict[str, float | None]:
        resolved: dict[str, float | None] = {f.key: f.strength if f.enabled else None for f in features}
        if strengths is None:
            return resolved
        if isinstance(strengths, Mapping):
            by_key = {f.key: f for f in features} | {f.label: f for f in features if f.label}
            for key, value in strengths.items():
                if key not in by_key:
                    known = ", ".join(f.key for f in features) or "none"
                    raise KeyError(f"unknown feature {key!r}; known: {known}")
                resolved[by_key[key].key] = None if value is None else float(value)
            return resolved
        values = list(strengths)
        if len(values) != len(features):
            raise ValueError(f"got {len(values)} strengths for {len(features)} features; give one per feature or a mapping")
        return {f.key: None if v is None else float(v) for f, v in zip(features, values)}

    def plan(
        self,
        strengths: Strengths = None,
        mode: str | None = None,
        steer_special_tokens: bool | None = None,
        generated_only: bool | None = None,
        features: Sequence[FeatureSpec] | None = None,
    ) -> SteeringPlan:
        """The edits for one request. `mode` overrides every feature's own mode.

        A strength of None switches a feature off. An add-mode feature at strength 0 is left
        out too (it is a no-op); clamp and pin at 0 are real edits (they remove or ablate the
        feature), so they stay. `features` defaults to this Steerer's list; a caller serving
        several visitors passes each visitor's own list.
        """
        features = self.features if features is None else list(features)
        values = self._resolve_strengths(strengths, features)
        edits: dict[int, list[Edit]] = {}
        for f in features:
            s = values[f.key]
            if s is None:
                continue
            if not math.isfinite(s):
                raise ValueError(f"strength of {f.display_name} must be a finite number, got {s}")
            m = mode or self.config.feature_mode(f)
            if m == "add" and s == 0:
                continue
            v = self.vector(f.layer, f.index)
            edits.setdefault(f.layer, []).append(
                Edit(m, v.direction, s, v.norm, self._activation_fn(v) if m == "pin" else None, f.display_name)
            )
        cfg = self.config
        return SteeringPlan(
            edits,
            steer_special_tokens=cfg.steer_special_tokens if steer_special_tokens is None else steer_special_tokens,
            generated_only=cfg.steer_generated_only if generated_only is None else generated_only,
        )

    def _activation_fn(self, v: SteeringVector) -> Callable[[Tensor], Tensor]:
        if v.rule is not None:
            return v.rule.activation
        return TopKFeature(self.sae(v.layer), v.index)  # TopK: a feature's activation depends on all the others

    # ---- chat -----------------------------------------------------------------------------

    def encode(self, messages: Messages, system_prompt: str | None = ...) -> Tensor:
        """Token ids (1, T) of a conversation, rendered once through the chat template."""
        system = self.config.system_prompt if system_prompt is ... else system_prompt
        return encode_chat(self.tokenizer, [dict(m) for m in messages], system)

    def stream(
        self,
        messages: Messages | str,
        strengths: Strengths = None,
        mode: str | None = None,
        settings: GenerationSettings | None = None,
        system_prompt: str | None = ...,
        plan: SteeringPlan | None = None,
        stop_event: threading.Event | None = None,
    ) -> Generation | BatchedGeneration:
        """Start a steered answer to `messages` (or one user message as a string); iterate it for text."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        plan = plan if plan is not None else self.plan(strengths, mode)
        if self.batcher is not None:
            return BatchedGeneration(self.batcher, self.encode(messages, system_prompt), plan=plan,
                                     settings=settings or self.config.generation, stop_event=stop_event).start()
        return self._generation_class()(
            self.model,
            self.tokenizer,
            self.encode(messages, system_prompt),
            plan=plan,
            settings=settings or self.config.generation,
            special_ids=self.special_ids,
            eos_ids=self._eos_ids(),
            stop_event=stop_event,
        ).start()

    def enable_batching(self, window_s: float = 0.015, max_batch: int = 8) -> bool:
        """Batch requests that start within `window_s` of each other (see `steering.batching`).

        Returns whether batching is on: it needs the hooks backend and a chat template (plain
        completion stops on a text marker, which `generate` checks for the whole batch at once).
        `window_s=0` or `max_batch=1` turns it off. Turning it on also gives the model's CPU linear
        layers the faster small-batch route (`steering.small_batch`).
        """
        if window_s <= 0 or max_batch <= 1 or self.backend != "hooks" or not getattr(self.tokenizer, "chat_template", None):
            self.batcher = None
        else:
            self.batcher = Batcher(self.model, self.tokenizer, self._eos_ids(), self.special_ids, window_s, max_batch)
            speed_up_small_batches(self.model)
        return self.batcher is not None

    @property
    def backend(self) -> str:
        return getattr(self.config, "backend", "hooks")

    def _generation_class(self) -> type[Generation]:
        if self.backend == "nnsight":
            from .nnsight_backend import NNsightGeneration

            return NNsightGeneration
        return Generation

    def chat(self, messages: Messages | str, **kwargs) -> str:
        """The whole answer as a string; a plain string is one user message."""
        return "".join(self.stream(messages, **kwargs))

    def _eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = self.model.generation_config.eos_token_id
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    # ---- inspection (read-only) -------------------------------------------------------------

    @property
    def inspector_layer(self) -> int:
        return self.config.resolve_inspector_layer(self.n_layers)

    def sae(self, layer: int | None = None) -> SAE:
        """The full SAE of `layer` (default: the inspector layer), loaded once on first use."""
        layer = self.inspector_layer if layer is None else layer
        with self._lock:
            if layer not in self._saes:
                if self.config.sae is None:
                    raise ValueError("the config names no SAE (`sae:` section), so there is nothing to inspect with")
                folder = resolve_sae_folder(self.config.sae_source(), self.config.sae.subfolder(layer), self.config.sae.revision)
                handle = open_sae(folder, self.config.sae.format, k=self.config.sae.k)
                handle.check_width(self.model.config.hidden_size)
                sae = handle.load()
                sae.meta.setdefault("layer", layer)
                self._saes[layer] = sae
            return self._saes[layer]

    def encode_prompts(self, prompts: Sequence[str], layer: int | None = None, chat: bool = True, plan: SteeringPlan | None = None) -> Tensor:
        """Codes (N, F) at each prompt's last token; unsteered unless a `plan` is given."""
        layer = self.inspector_layer if layer is None else layer
        sae = self.sae(layer)
        with steering(self.model, plan):
            return inspector.encode_prompts(self.model, self.tokenizer, sae, prompts, layer, chat=chat, system_prompt=self.config.system_prompt)

    def inspect(self, prompt: str, n: int = 10, layer: int | None = None, chat: bool = True, plan: SteeringPlan | None = None) -> list[inspector.FeatureActivation]:
        """The strongest features at the prompt's last token (unsteered unless a `plan` is given)."""
        return inspector.top_features(self.encode_prompts([prompt], layer, chat, plan)[0], n)

    def typical_norm(self, layer: int) -> float:
        """Mean residual norm at `layer` over ordinary text (special-token positions left out),
        computed once: what makes a strength mean something on this layer."""
        with self._lock:
            if layer not in self._norms:
                h = inspector.residuals(self.model, self.tokenizer, NORM_TEXTS, layer, chat=False, last_token_only=False)
                norms = [x[1:].norm(dim=-1) for x in h]  # the first position's norm is an outlier in most models
                self._norms[layer] = float(torch.cat(norms).mean())
            return self._norms[layer]

    def differential(self, positive: Sequence[str], negative: Sequence[str], n: int = 20, layer: int | None = None, chat: bool = True):
        """Features that fire more on `positive` prompts than on `negative` ones."""
        return inspector.differential_features(self.encode_prompts(positive, layer, chat), self.encode_prompts(negative, layer, chat), n)

    def scan(self, prompts: Sequence[str], index: int, layer: int | None = None, chat: bool = True) -> Tensor:
        return inspector.scan_prompts_for_feature(self.encode_prompts(prompts, layer, chat), index)

    def token_activations(self, prompt: str, index: int, layer: int | None = None, chat: bool = True) -> list[tuple[str, float]]:
        layer = self.inspector_layer if layer is None else layer
        return inspector.token_activations(self.model, self.tokenizer, self.sae(layer), prompt, index, layer, chat, self.config.system_prompt)
