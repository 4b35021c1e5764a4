"""What the web app does, as plain Python: validated chat, inspection and feature search.

`app.py` only maps these calls to Gradio components. Every input from a visitor is checked
here, once, where it enters (`validated`, `setup_from_controls`, `setup_from_api`); problems
surface as `UserError` with a message to show as it is. A visitor's setup (`SteeringSetup`)
travels with each call, so visitors never share steering, and nothing here changes the shared
engine's feature list. Display-ready views (sliders, tables, the token view) are in `views`.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, replace
from typing import Iterator, Protocol, Sequence

import torch

from steering.config import MODES, FeatureSpec
from steering.engine import Engine
from steering.inspection.concepts import concept_prompt_sets
from steering.inspection.stats import fire_rate
from steering.keys import FeatureKey
from steering.sae import SAEFormatError
from steering.service.errors import log, visitor_message
from steering.service.limits import (
    Limits,
    UserError,
    cap_generation,
    check_message,
    clamp_strength,
    clean_text,
    fit_history,
    prompt_lines,
)
from steering.service.messages import generation_settings, plain_history
from steering.service.setup import SteeringSetup
from steering.steer.plan import SteeringPlan
from steering.steer.vectors import VectorsError


class FeatureInfo(Protocol):
    """What an SAE ships about its features (labels, top contexts); optional."""

    def label(self, layer: int, index: int) -> str | None: ...

    def contexts(self, layer: int, index: int) -> list[str]: ...


@dataclass(frozen=True)
class ChatUpdate:
    steered: str
    unsteered: str | None
    notices: tuple[str, ...]


class DemoService:
    def __init__(self, engine: Engine, limits: Limits = Limits(), info: FeatureInfo | None = None):
        self.engine, self.limits, self.info = engine, limits, info
        width = getattr(engine.model.config, "hidden_size", None)
        wrong = [v for v in engine.vectors.vectors.values() if width is not None and v.direction.shape[-1] != width]
        if wrong:  # refuse at start, not with a shape error on a visitor's first message
            v = wrong[0]
            raise ValueError(
                f"The steering vector of feature {v.key} has width {v.direction.shape[-1]}, but the model's "
                f"residual width is {width}: the SAE in demo.yaml (or steering_vectors.pt) was made for another model. "
                f"Point `sae:` at an SAE for {engine.config.model}, then run `python -m steering.cli.extract`."
            )

    @property
    def steerer(self) -> Engine:
        """The engine (its name before the restructure)."""
        return self.engine

    # ---- setup ----------------------------------------------------------------------------

    def defaults(self) -> SteeringSetup:
        return SteeringSetup(strengths=self.engine.default_strengths(), generation=self.engine.config.generation)

    @property
    def d_sae(self) -> int | None:
        """The inspector layer's SAE width, when an SAE is configured (it is loaded on first use)."""
        return None if self.engine.config.sae is None else self.engine.sae().d_sae

    def label(self, layer: int, index: int) -> str:
        found = self.info.label(layer, index) if self.info is not None else None
        return found or f"feature {index} @ layer {layer}"

    def features_for(self, setup: SteeringSetup) -> list[FeatureSpec]:
        """The configured features, then the visitor's own."""
        features = list(self.engine.features)
        known = {f.key for f in features}
        for key in setup.custom:
            if key not in known:
                features.append(FeatureSpec(layer=key.layer, index=key.index, strength=0.0, label=self.label(*key)))
        return features

    def slider_range(self, f: FeatureSpec) -> tuple[float, float]:
        """The feature's own range, else plus or minus the layer's typical residual norm."""
        if f.range is not None:
            return f.range
        norm = float(round(self.engine.typical_norm(f.layer)))
        return (-norm, norm)

    def feature_index(self, index) -> int:
        """A feature index of the inspector's SAE, from a whole number (or a float that is one)."""
        if isinstance(index, float) and index.is_integer():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int):
            raise UserError(f"The feature index must be a whole number, got {index!r}.")
        d_sae = self.d_sae
        if not 0 <= index < d_sae:
            raise UserError(f"Feature {index} is outside the SAE: use 0 to {d_sae - 1}.")
        return index

    def validated(self, setup: SteeringSetup) -> tuple[SteeringSetup, list[str]]:
        """The setup with strengths inside their ranges and generation within the caps."""
        notices: list[str] = []
        if len(setup.custom) > self.limits.max_custom_features:
            raise UserError(f"At most {self.limits.max_custom_features} features can be added; remove some first.")
        n_layers, d_sae = self.engine.n_layers, (self.d_sae if setup.custom else None)
        for key in setup.custom:
            if not 0 <= key.layer < n_layers:
                raise UserError(f"Layer {key.layer} is outside this model: use 0 to {n_layers - 1}.")
            if d_sae is not None and not 0 <= key.index < d_sae:
                raise UserError(f"Feature {key.index} is outside the SAE: use 0 to {d_sae - 1}.")
        features = {f.key: f for f in self.features_for(setup)}
        strengths: dict[FeatureKey, float | None] = {}
        for key, value in setup.strengths.items():
            if key not in features:
                notices.append(f"Strength for unknown feature {key} was ignored.")
            elif value is None:
                strengths[key] = None
            else:
                lo, hi = self.slider_range(features[key])
                strengths[key], note = clamp_strength(value, lo, hi, features[key].display_name)
                notices += note
        generation, note = cap_generation(setup.generation, self.limits)
        return replace(setup, strengths=strengths, generation=generation), notices + note

    def setup_from_controls(self, setup: SteeringSetup, mode: str, compare: bool, gen: Sequence, values: Sequence,
                            enabled: Sequence) -> SteeringSetup:
        """The visitor's setup as the page shows it: slot i holds the i-th feature of `features_for`."""
        strengths = {f.key: (float(v) if on else None) for f, v, on in zip(self.features_for(setup), values, enabled)}
        return replace(setup, strengths=strengths, mode=None if mode == "own" else mode, compare=bool(compare),
                       generation=generation_settings(*gen))

    def setup_from_api(self, strengths, mode, add_features, max_new_tokens, temperature, top_p, repetition_penalty,
                       seed) -> SteeringSetup:
        """The setup of a named-API call: unset arguments keep the defaults."""
        try:
            custom = tuple(FeatureKey.parse(k) for k in (add_features or []))
            given = {FeatureKey.parse(k): v for k, v in dict(strengths or {}).items()}
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if mode not in (*MODES, "own"):
            raise UserError(f"mode must be one of {', '.join(MODES)}, own; got {mode!r}")
        d = self.defaults()
        g = d.generation
        generation = generation_settings(
            g.max_new_tokens if max_new_tokens is None else max_new_tokens, g.temperature if temperature is None else temperature,
            g.top_p if top_p is None else top_p, g.repetition_penalty if repetition_penalty is None else repetition_penalty,
            (-1 if g.seed is None else g.seed) if seed is None else seed,
        )
        return replace(d, strengths=dict(d.strengths) | given, mode=None if mode == "own" else mode, custom=custom,
                       generation=generation)

    def add_feature(self, setup: SteeringSetup, index, max_features: int) -> tuple[SteeringSetup, str]:
        """`setup` with a slider for feature `index` of the inspector layer, and what to tell the visitor."""
        if index is None:
            raise UserError("Pick a feature first: click a row of a features table, or type its index.")
        key = FeatureKey(self.engine.inspector_layer, self.feature_index(index))
        if key in setup.custom or any(f.key == key for f in self.engine.features):
            return setup, f"Feature {key.index} already has a slider."
        if len(self.features_for(setup)) >= max_features:
            raise UserError(f"All {max_features} slider slots are in use.")
        setup = replace(setup, custom=setup.custom + (key,))
        self.validated(setup)
        try:
            self.engine.vector(*key)  # read now, not on the visitor's first message
        except (SAEFormatError, VectorsError) as exc:
            raise self._unreadable(exc, [key]) from None
        return setup, f"Added a slider for feature {key.index} ({self.label(*key)}). Set its strength, then send a message."

    def plan(self, setup: SteeringSetup) -> SteeringPlan:
        """The steering plan of a validated setup."""
        try:
            return self.engine.plan_resolved(setup.strengths, setup.mode, self.features_for(setup))
        except (SAEFormatError, VectorsError) as exc:
            raise self._unreadable(exc, setup.custom) from None

    def _unreadable(self, exc: Exception, added: Sequence[FeatureKey]) -> UserError:
        """An added feature the SAE cannot serve; the server's paths stay in the log."""
        log.warning("steering vector for an added feature unavailable: %s", exc)
        layers = sorted({key.layer for key in added})
        return UserError(f"An added feature (layer {', '.join(map(str, layers)) or '?'}) cannot be read from this demo's SAE. "
                         f"Add features at layer {self.engine.inspector_layer}, the inspector's layer.")

    # ---- chat -----------------------------------------------------------------------------

    def chat(self, message: str, history: Sequence[dict] | None, setup: SteeringSetup) -> Iterator[ChatUpdate]:
        """Stream the steered answer (and, with `setup.compare`, the unsteered one beside it, in the same batch)."""
        text = check_message(message, self.limits)
        setup, notices = self.validated(setup)
        budget = min(self.limits.max_prompt_tokens, self._context() - setup.generation.max_new_tokens)
        messages, dropped = fit_history(plain_history(history) + [{"role": "user", "content": text}], self._count, budget)
        notices = tuple(notices + dropped)
        events: queue.SimpleQueue = queue.SimpleQueue()
        requests = [self.engine.request(messages, self.plan(setup), setup.generation, events=events, tag=0)]
        if setup.compare:
            requests.append(self.engine.request(messages, SteeringPlan(), setup.generation, events=events, tag=1))
        stream = self.engine.stream_many(requests)
        texts = ["", ""]
        try:  # the requests stop however this ends: finished, failed, or closed by Stop before the first token
            yield ChatUpdate("", "" if setup.compare else None, notices)
            for i, piece in stream:
                texts[i] += piece
                yield ChatUpdate(texts[0], texts[1] if setup.compare else None, notices)
        except (torch.OutOfMemoryError, MemoryError):
            raise UserError(visitor_message(MemoryError())) from None
        finally:
            stream.stop()

    def _count(self, messages: list[dict]) -> int:
        return int(self.engine.encode(messages).shape[-1])

    def _context(self) -> int:
        return int(getattr(self.engine.model.config, "max_position_embeddings", 4096) or 4096)

    # ---- inspection (read-only) -------------------------------------------------------------

    def check_inspectable(self) -> None:
        if self.engine.config.sae is None:
            raise UserError("This demo has no SAE configured, so the inspector is off: add an `sae:` section to demo.yaml.")

    def inspect(self, prompt: str, setup: SteeringSetup | None = None, steered: bool = False, n: int = 10) -> list[dict]:
        """Top features at the prompt's last token: unsteered, or under `setup`'s steering."""
        self.check_inspectable()
        text = check_message(prompt, self.limits)
        plan = self.plan(self.validated(setup)[0]) if steered and setup is not None else None
        layer = self.engine.inspector_layer
        rows = self.engine.inspect(text, n=max(1, min(int(n), 50)), plan=plan)
        return [{"index": r.index, "label": self.label(layer, r.index), "activation": round(r.value, 4)} for r in rows]

    def token_activations(self, prompt: str, index: int) -> list[tuple[str, float]]:
        self.check_inspectable()
        return self.engine.token_activations(check_message(prompt, self.limits), self.feature_index(index))

    def differential(self, positive: str, negative: str, n: int = 20) -> list[dict]:
        self.check_inspectable()
        pos = prompt_lines(positive, self.limits, "positive")
        neg = prompt_lines(negative, self.limits, "negative")
        return self._rows(self.engine.differential(pos, neg, n=max(1, min(int(n), 100))))

    def scan(self, prompts: str, index: int) -> tuple[list[dict], float]:
        """A feature's activation on each prompt, and its fire rate over them."""
        self.check_inspectable()
        lines = prompt_lines(prompts, self.limits, "scan")
        index = self.feature_index(index)
        codes = self.engine.encode_prompts(lines)
        rows = [{"prompt": p, "activation": round(float(v), 4)} for p, v in zip(lines, codes[:, index])]
        return rows, fire_rate(codes, index)

    def concept_search(self, concept: str, n: int = 10) -> list[dict]:
        """Features that fire more on prompts about `concept` than on matched neutral prompts."""
        self.check_inspectable()
        text = clean_text(concept).strip()
        if not text or len(text) > 100:
            raise UserError("Write a word or a short phrase (up to 100 characters) to search for, e.g. 'the ocean'.")
        pos, neg = concept_prompt_sets(text)
        return self._rows(self.engine.differential(pos, neg, n=max(1, min(int(n), 50)), chat=False))

    def contexts(self, index: int) -> list[str]:
        self.check_inspectable()
        index = self.feature_index(index)
        return self.info.contexts(self.engine.inspector_layer, index) if self.info is not None else []

    def status(self) -> dict:
        """Generations in flight and the model served (counts only, nothing about visitors)."""
        return {"active_generations": self.engine.active_requests, "model": self.engine.config.model}

    def _rows(self, rows) -> list[dict]:
        layer = self.engine.inspector_layer
        return [
            {"index": r.index, "label": self.label(layer, r.index), "score": round(r.score, 4), "mean_pos": round(r.mean_pos, 4),
             "mean_neg": round(r.mean_neg, 4), "fire_pos": round(r.fire_pos, 3), "fire_neg": round(r.fire_neg, 3)}
            for r in rows
        ]
