"""`Engine`: the one owner of a loaded model and everything attached to it.

Longer than 300 lines: one owner for the model's lifetime across three backends (hooks, nnsight, vLLM).

It owns the model, tokenizer, steering vectors, the lazily loaded SAEs and typical norms, the
hooks on the model, the lock, the batcher and the small-batch patch, and `close()` (or leaving a
`with` block) undoes every one of them. Options (batching, device, dtype) are chosen when it is
built. Strengths, mode and settings are arguments of each call, so one engine serves many
visitors at once and a strength changes between turns without reloading anything.
"""

from __future__ import annotations

import queue
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from torch import Tensor

from steering.config import DemoConfig, FeatureSpec, GenerationSettings, load_config
from steering.forksafe import ForkSafeLock
from steering.generate.batching import Batcher
from steering.generate.decode import Decoder, HooksRunner, Request
from steering.generate.small_batch import speed_up_small_batches, undo_small_batches
from steering.generate.stream import Stream
from steering.inspection import capture, stats
from steering.inspection.message import MessageCodes
from steering.inspection.norms import TypicalNorms
from steering.keys import FeatureKey
from steering.model.chat_template import PLAIN_TURN_STOP, encode_chat, special_token_ids
from steering.model.layers import num_layers
from steering.model.loading import load_model
from steering.sae import SAE, SAEHandle, TopKFeature, open_sae, resolve_sae_folder
from steering.sae.cache import SAECache
from steering.steer.hooks import attach, detach
from steering.steer.plan import SteeringPlan, build_plan, resolve_strengths
from steering.steer.vectors import (
    SteeringVector,
    VectorSet,
    extract_vectors,
    vectors_for_config,
)

Strengths = Mapping[str | FeatureKey, float | None] | Sequence[float | None] | None
Messages = Sequence[Mapping[str, str]]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


class Engine:
    """Chat with, steer and inspect one model as a config describes it."""

    def __init__(self, config: DemoConfig, model, tokenizer, vectors: VectorSet, *, batching: bool = False,
                 batch_window_s: float = 0.015, max_batch: int = 8, log: Callable[[str], None] = _stderr):
        self.config, self.model, self.tokenizer, self.vectors, self.log = config, model, tokenizer, vectors, log
        self.n_layers = num_layers(model)
        self.features: list[FeatureSpec] = list(config.features)
        self.special_ids = special_token_ids(tokenizer)
        self.notice: str | None = None
        chat_model = bool(getattr(tokenizer, "chat_template", None))
        if not chat_model:
            self.notice = (f"{config.model} has no chat template: chatting as plain completion "
                           "(a 'User: ... / Assistant:' transcript), so answers may be rougher than a chat model's.")
            log(self.notice)
        self.saes = SAECache(self._open_sae)
        self.norms = TypicalNorms(model, tokenizer)
        self._lock = ForkSafeLock()
        if self.backend in ("vllm", "remote"):
            self._serve_elsewhere(batching)
            return
        runner = None
        if self.backend == "nnsight":  # may refuse (nnsight not installed) before anything is attached
            from steering.backends.nnsight import NNsightRunner

            runner = NNsightRunner(model, tokenizer)
            if batching:
                log("batching is off: the nnsight backend steers a whole batch with one plan (use backend: hooks to batch)")
                batching = False
        self.hooks = attach(model, owner=self)
        runner = runner or HooksRunner(model, self.hooks, self.special_ids)
        self.decoder = Decoder(model, tokenizer, runner, self.eos_ids(), stop_text=None if chat_model else PLAIN_TURN_STOP)
        self.batcher = Batcher(self.decoder.run, batch_window_s if batching else 0.0, max_batch if batching else 1)
        self._patched = self.batcher.batching and speed_up_small_batches(model) > 0

    def _serve_elsewhere(self, batching: bool) -> None:
        """The weights are in vLLM's worker or on remote servers: their decoder, which batches by itself."""
        from steering.backends.remote import RemoteDecoder
        from steering.backends.vllm.engine import vllm_decoder

        self.hooks, self._patched = None, False
        self.model.special_ids = list(self.special_ids)
        self.decoder = vllm_decoder(self, batching) if self.backend == "vllm" else RemoteDecoder(self.model, self.tokenizer)
        self.batcher = Batcher(self.decoder.run, 0.0, 1)

    def _steered(self, plan: SteeringPlan | None):  # inspection under `plan` on this thread
        return self.hooks.steering(plan) if self.hooks is not None else self.model.steering(plan)

    @classmethod
    def from_config(cls, config: str | Path | DemoConfig = "demo.yaml", *, batching: bool = False,
                    batch_window_s: float = 0.015, max_batch: int = 8, log: Callable[[str], None] = _stderr,
                    **overrides) -> "Engine":
        """Load the config's model and vectors; `overrides` replace config fields (e.g. device="cpu")."""
        if not isinstance(config, DemoConfig):
            config = load_config(config)
        if overrides:
            config = replace(config, **overrides)
        if config.backend in ("vllm", "remote"):
            from steering.backends import open_served_model

            model, tokenizer = open_served_model(config)
        else:
            model, tokenizer = load_model(config.model_source(), device=config.device, dtype=config.dtype)
        config.check_against(num_layers(model))
        vectors = vectors_for_config(config, log=log, d_model=model.config.hidden_size)
        return cls(config, model, tokenizer, vectors, batching=batching, batch_window_s=batch_window_s,
                   max_batch=max_batch, log=log)

    def close(self) -> None:
        """Detach every hook and undo every patch this engine made on the model (nothing may be running)."""
        if self._patched:
            undo_small_batches(self.model)
            self._patched = False
        if self.hooks is None:
            self.model.close()
            return
        detach(self.model, owner=self)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def backend(self) -> str:
        return getattr(self.config, "backend", "hooks")

    @property
    def active_requests(self) -> int:
        """Requests generating right now (a batch counts its rows)."""
        return self.decoder.active

    def eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = self.model.generation_config.eos_token_id
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    # ---- steering -------------------------------------------------------------------------

    def default_strengths(self) -> dict[FeatureKey, float | None]:
        """Each feature's configured strength, or None (off) for features listed with `enabled: false`."""
        return {f.key: f.strength if f.enabled else None for f in self.features}

    def feature(self, key: str | int | FeatureKey) -> FeatureSpec:
        """A feature by key (`L15:123`), by position, or by label."""
        if isinstance(key, int):
            if not 0 <= key < len(self.features):
                raise KeyError(f"there is no feature #{key}; features are numbered 0..{len(self.features) - 1}")
            return self.features[key]
        for f in self.features:
            if key == f.key or key == f.label or (isinstance(key, str) and key.strip() == str(f.key)):
                return f
        known = ", ".join(str(f.key) for f in self.features) or "none"
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
                extracted = extract_vectors(self.config, [FeatureSpec(layer=layer, index=index)], log=self.log,
                                            d_model=self.model.config.hidden_size)
                self.vectors.vectors.update(extracted.vectors)
                found = extracted.get(layer, index)
        return found

    def add_feature(self, layer: int, index: int, strength: float = 0.0, label: str | None = None,
                    mode: str | None = None) -> FeatureSpec:
        """Add a feature to this engine's list for everyone using it (the console); per-visitor
        features go to `plan(features=...)` instead."""
        spec = FeatureSpec(layer=layer, index=index, strength=strength, label=label, mode=mode)
        self.vector(layer, index)
        with self._lock:
            if any(f.key == spec.key for f in self.features):
                return self.feature(spec.key)
            self.features.append(spec)
        return spec

    def plan(self, strengths: Strengths = None, mode: str | None = None, steer_special_tokens: bool | None = None,
             generated_only: bool | None = None, features: Sequence[FeatureSpec] | None = None) -> SteeringPlan:
        """The edits for one request (see `steer.plan.build_plan`); `mode` overrides every feature's own.
        `features` defaults to this engine's list; a caller serving several visitors passes each one's own."""
        features = self.features if features is None else list(features)
        return self.plan_resolved(resolve_strengths(strengths, features), mode, features,
                                  steer_special_tokens, generated_only)

    def plan_resolved(self, strengths: Mapping[FeatureKey, float | None], mode: str | None,
                      features: Sequence[FeatureSpec], steer_special_tokens: bool | None = None,
                      generated_only: bool | None = None) -> SteeringPlan:
        """`plan` for strengths already validated at the caller's boundary (the service's)."""
        on = [f for f in features if strengths.get(f.key) is not None]
        vectors = {f.key: self.vector(f.layer, f.index) for f in on}
        readers = {f.key: self._activation_fn(vectors[f.key]) for f in on
                   if (mode or self.config.feature_mode(f)) == "pin"}
        cfg = self.config
        return build_plan(
            features, strengths, vectors, readers, default_mode=cfg.mode, mode=mode,
            steer_special_tokens=cfg.steer_special_tokens if steer_special_tokens is None else steer_special_tokens,
            generated_only=cfg.steer_generated_only if generated_only is None else generated_only,
        )

    def _activation_fn(self, v: SteeringVector) -> Callable[[Tensor], Tensor]:
        if v.rule is not None:
            return v.rule.activation
        return TopKFeature(self.sae(v.layer), v.index)  # TopK: a feature's activation depends on all the others

    # ---- generation -------------------------------------------------------------------------

    def encode(self, messages: Messages | str, system_prompt: str | None = ...) -> Tensor:
        """Token ids (1, T) of a conversation (or one user message), rendered once through the chat template."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        system = self.config.system_prompt if system_prompt is ... else system_prompt
        return encode_chat(self.tokenizer, [dict(m) for m in messages], system).to(self.model.device)

    def request(self, messages: Messages | str, plan: SteeringPlan | None = None, settings: GenerationSettings | None = None,
                system_prompt: str | None = ..., events: queue.SimpleQueue | None = None, tag: int = 0,
                record_logits: bool = False) -> Request:
        """One request, not yet started (for `stream_many` and batch jobs)."""
        turns = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        opening = repr((system_prompt, turns[0].get("content") if turns else ""))
        return Request(self.encode(messages, system_prompt), plan, settings or self.config.generation,
                       events if events is not None else queue.SimpleQueue(), tag, record_logits=record_logits,
                       chat_key=opening)

    def stream(self, messages: Messages | str, strengths: Strengths = None, mode: str | None = None,
               settings: GenerationSettings | None = None, system_prompt: str | None = ...,
               plan: SteeringPlan | None = None, record_logits: bool = False) -> Stream:
        """Start a steered answer to `messages` (or one user message as a string); iterate it for text."""
        plan = plan if plan is not None else self.plan(strengths, mode)
        r = self.request(messages, plan, settings, system_prompt, record_logits=record_logits)
        return Stream([r], r.events, self.batcher.submit).start()

    def stream_many(self, requests: Sequence[Request]) -> Stream:
        """Several requests (made by `request`, sharing one events queue) started together, in one batch
        where the backend allows; iterate the result for `(i, piece)`."""
        return Stream(requests, requests[0].events, self.batcher.submit, tagged=True).start()

    def run_now(self, requests: Sequence[Request]) -> None:
        """Generate `requests` on the calling thread as one batch (batch jobs: evaluation, corpus answers)."""
        self.decoder.run(requests)

    def chat(self, messages: Messages | str, **kwargs) -> str:
        """The whole answer as a string; a plain string is one user message."""
        return "".join(self.stream(messages, **kwargs))

    # ---- inspection (read-only) -------------------------------------------------------------

    @property
    def inspector_layer(self) -> int:
        return self.config.resolve_inspector_layer(self.n_layers)

    def sae(self, layer: int | None = None) -> SAE:
        """The full SAE of `layer` (default: the inspector layer), loaded once on first use, on the CPU."""
        return self.saes.load(self.inspector_layer if layer is None else layer)

    def sae_width(self, layer: int | None = None) -> int:
        """The number of features of `layer`'s SAE, from its header: no weights read, no tensor work."""
        return self.saes.width(self.inspector_layer if layer is None else layer)

    def _open_sae(self, layer: int) -> SAEHandle:
        if self.config.sae is None:
            raise ValueError("the config names no SAE (`sae:` section), so there is nothing to inspect with")
        folder = resolve_sae_folder(self.config.sae_source(), self.config.sae.subfolder(layer), self.config.sae.revision)
        handle = open_sae(folder, self.config.sae.format, k=self.config.sae.k)
        handle.check_width(self.model.config.hidden_size)
        return handle

    def encode_prompts(self, prompts: Sequence[str], layer: int | None = None, chat: bool = True,
                       plan: SteeringPlan | None = None) -> Tensor:
        """Codes (N, F) at each prompt's last token; unsteered unless a `plan` is given."""
        layer = self.inspector_layer if layer is None else layer
        sae = self.sae(layer)
        with self._steered(plan):
            return capture.encode_prompts(self.model, self.tokenizer, sae, prompts, layer, chat=chat,
                                          system_prompt=self.config.system_prompt)

    def inspect(self, prompt: str, n: int = 10, layer: int | None = None, chat: bool = True,
                plan: SteeringPlan | None = None) -> list[stats.FeatureActivation]:
        """The strongest features at the prompt's last token (unsteered unless a `plan` is given)."""
        return stats.top_features(self.encode_prompts([prompt], layer, chat, plan)[0], n)

    def message_codes(self, message: str, layer: int | None = None, plan: SteeringPlan | None = None) -> MessageCodes:
        """SAE codes at each token of the visitor's `message` (template tokens left out), unsteered unless `plan`."""
        layer = self.inspector_layer if layer is None else layer
        with self._steered(plan):
            return capture.message_codes(self.model, self.tokenizer, self.sae(layer), message, layer, self.config.system_prompt)

    def read_ids(self, prompts: Sequence[Sequence[int]], layer: int) -> list[Tensor]:
        """Unsteered residuals after decoder `layer` at every position of each token-id prompt, (T_i, d) float32."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return capture.read_ids(self.model, prompts, layer, pad)

    def typical_norm(self, layer: int) -> float:
        """Mean residual norm at `layer` over ordinary text, computed once (see `capture.typical_norm`)."""
        return self.norms.measure([layer])[layer]

    def differential(self, positive: Sequence[str], negative: Sequence[str], n: int = 20, layer: int | None = None,
                     chat: bool = True) -> list[stats.DifferentialFeature]:
        """Features that fire more on `positive` prompts than on `negative` ones."""
        return stats.differential_features(self.encode_prompts(positive, layer, chat), self.encode_prompts(negative, layer, chat), n)

    def scan(self, prompts: Sequence[str], index: int, layer: int | None = None, chat: bool = True) -> Tensor:
        return stats.scan_prompts_for_feature(self.encode_prompts(prompts, layer, chat), index)

    def token_activations(self, prompt: str, index: int, layer: int | None = None, chat: bool = True) -> list[tuple[str, float]]:
        layer = self.inspector_layer if layer is None else layer
        return capture.token_activations(self.model, self.tokenizer, self.sae(layer), prompt, index, layer, chat,
                                         self.config.system_prompt)


Steerer = Engine
"""The name before the restructure."""
