"""What the web app does, as plain Python: validated chat, inspection and feature search.

`app.py` only maps these calls to Gradio components. Every input from a visitor is checked
once, where it enters (each argument by `inputs`, the setup by `validated`); problems
surface as `UserError` with a message to show as it is. A visitor's setup (`SteeringSetup`)
travels with each call, so visitors never share steering, and nothing here changes the shared
engine's feature list. Display-ready views (sliders, tables, the token view) are in `views`.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import torch

from steering.config import MODE_INFO, FeatureSpec
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.sae import SAEFormatError
from steering.service import inputs
from steering.service.visitor_features import as_visitor_set, check_condition
from steering.service.admission import Admission
from steering.service.errors import log, visitor_message
from steering.service.memory import release_free_memory
from steering.service.inspector import Inspection
from steering.service.limits import (
    Limits,
    UserError,
    cap_generation,
    check_message,
    clamp_strength,
    fit_history,
)
from steering.service.messages import PAGE_NAMES, generation_settings, plain_history
from steering.service.concepts import ConceptVectors, concept_choices, with_concepts
from steering.service.recommend import Recommendations, start_at
from steering.service.setup import SteeringSetup, from_api, mode_choice
from steering.steer.plan import SteeringPlan
from steering.steer.vectors import VectorsError


class FeatureInfo(Protocol):
    """What an SAE ships about its features (labels, top contexts); optional."""

    def label(self, layer: int, index: int) -> str | None: ...

    def contexts(self, layer: int, index: int) -> list[str]: ...


RECOMMENDED = 0.2
"""A phrase's feature starts at 0.2 of its layer's typical norm (the shipped defaults sit at 0.17 to 0.23)."""


@dataclass(frozen=True)
class ChatUpdate:
    steered: str
    unsteered: str | None
    notices: tuple[str, ...]


class DemoService(Inspection):
    """`measure_norms(layers) -> {layer: norm}` runs the model forward that typical norms need; the app passes
    one wrapped in `spaces.GPU`, so that on ZeroGPU no event outside a GPU call touches the model."""

    def __init__(self, engine: Engine, limits: Limits = Limits(), info: FeatureInfo | None = None,
                 measure_norms: Callable[[tuple[int, ...]], dict[int, float]] | None = None,
                 admission: Admission | None = None, recommendations: Recommendations | None = None):
        self.engine, self.limits, self.info, self.recommendations = engine, limits, info, recommendations
        self.admission = admission or Admission(64)  # how long chats take: the busy message's estimate
        self.concept_vectors = ConceptVectors.for_engine(engine)
        self.measure_norms = measure_norms or engine.norms.measure
        width = getattr(engine.backend.model_config, "hidden_size", None)
        wrong = [v for v in engine.vectors.vectors.values() if width is not None and v.direction.shape[-1] != width]
        if wrong:  # refuse at start, not with a shape error on a visitor's first message
            v = wrong[0]
            raise ValueError(
                f"The steering vector of feature {v.key} has width {v.direction.shape[-1]}, but the model's "
                f"residual width is {width}: the SAE in demo.yaml (or steering_vectors.pt) was made for another model. "
                f"Point `sae:` at an SAE for {engine.config.model}, then run `python -m steering.cli.extract`."
            )

    # ---- setup ----------------------------------------------------------------------------

    def defaults(self) -> SteeringSetup:
        return SteeringSetup(strengths=self.engine.default_strengths(), generation=self.engine.config.generation)

    @property
    def d_sae(self) -> int | None:
        """The inspector layer's SAE width, when an SAE is configured (it is loaded on first use)."""
        return None if self.engine.config.sae is None else self.engine.sae_width()

    def label(self, layer: int, index: int) -> str:
        found = self.info.label(layer, index) if self.info is not None else None
        return found or f"feature {index} @ layer {layer}"

    def features_for(self, setup: SteeringSetup) -> list[FeatureSpec]:
        """The configured features, then the visitor's own, each with the visitor's mode and condition."""
        features = list(self.engine.features)
        known = {f.key for f in features}
        for key in setup.custom:
            if key not in known:
                features.append(FeatureSpec(layer=key.layer, index=key.index, strength=0.0, label=self.label(*key)))
        return [as_visitor_set(f, setup, self.engine.config) for f in features]

    def slider_range(self, f: FeatureSpec, mode: str | None = None) -> tuple[float, float]:
        """The feature's own range, else the limits of an angle mode, else plus or minus the layer's typical
        residual norm. `mode`: the mode that applies (None: the feature's own); a range written for a mode of
        another unit is not used."""
        info = MODE_INFO[mode or self.engine.config.feature_mode(f)]
        if f.range is not None and MODE_INFO[self.engine.config.feature_mode(f)].unit == info.unit:
            return f.range
        if info.limits is not None:
            return info.limits
        norm = float(round(self.norms([f])[f.layer]))
        return (-norm, norm)

    def norms(self, features: Sequence[FeatureSpec]) -> dict[int, float]:
        """The typical norm of each feature's layer. A missing one is measured in one `measure_norms` call
        together with every layer a slider can have (the configured ones and the inspector's)."""
        layers = tuple(dict.fromkeys(f.layer for f in features))
        known = self.engine.norms.known
        if any(layer not in known for layer in layers):
            wanted = [*layers, *(f.layer for f in self.engine.features)]
            if self.engine.config.sae is not None:
                wanted.append(self.engine.inspector_layer)
            self.engine.norms.remember(self.measure_norms(tuple(x for x in dict.fromkeys(wanted) if x not in known)))
            known = self.engine.norms.known
        return {layer: known[layer] for layer in layers}

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
        for key, condition in setup.conditions.items():
            if condition is not None:
                check_condition(self.engine, key, condition)
        features = {f.key: f for f in self.features_for(setup)}
        strengths: dict[FeatureKey, float | None] = {}
        for key, value in setup.strengths.items():
            if key not in features:
                notices.append(f"Strength for unknown feature {key} was ignored.")
            elif value is None:
                strengths[key] = None
            else:
                lo, hi = self.slider_range(features[key], setup.mode)
                strengths[key], note = clamp_strength(value, lo, hi, features[key].display_name)
                notices += note
        modes = {}
        for key, choice in setup.modes.items():
            if key not in features:
                notices.append(f"Mode for unknown feature {key} was ignored.")
            else:
                modes[key] = choice
        if self.engine.config.sae is None:
            pinned = [str(key) for key, f in features.items()
                      if strengths.get(key) is not None and setup.mode_of(key, self.engine.config.feature_mode(f)).mode == "pin"]
            if pinned:
                raise UserError(f"Mode pin reads the SAE's encoder, and this demo has no SAE: choose add or clamp for "
                                f"{', '.join(pinned)}.")
        generation, note = cap_generation(setup.generation, self.limits)
        return replace(setup, strengths=strengths, modes=modes, generation=generation), notices + note

    def setup_from_controls(self, setup: SteeringSetup, compare: bool, generation: Mapping[str, Any],
                            values: Sequence, enabled: Sequence, modes: Sequence) -> SteeringSetup:
        """The visitor's setup as the page shows it: slot i holds the i-th feature of `features_for`, with its
        strength, on box and mode; `generation` holds the settings by field name, -1 a random seed."""
        features = self.features_for(setup)
        strengths = {f.key: (float(v) if on else None) for f, v, on in zip(features, values, enabled)}
        chosen = {f.key: mode_choice(m, f"the mode of {f.display_name}") for f, m in zip(features, modes)}
        return replace(setup, strengths=strengths, mode=None, modes=chosen, compare=bool(compare),
                       generation=generation_settings(generation, setup.generation, PAGE_NAMES))

    def setup_from_api(self, strengths, mode, add_features, max_new_tokens=None, temperature=None, top_p=None,
                       repetition_penalty=None, seed=None, modes=None, concepts=None) -> SteeringSetup:
        """The setup of a named-API call (`setup.from_api`): unset arguments keep the defaults; `concepts` is a
        list of concept vectors to steer with (`concepts.concept_choice`; layer: the inspector's by default)."""
        generation = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                      "repetition_penalty": repetition_penalty, "seed": seed}
        setup = from_api(self.defaults(), self.known_features, strengths, mode, add_features, generation, modes)
        return replace(setup, concepts=concept_choices(concepts, self.engine.inspector_layer, self.engine.n_layers))

    def known_features(self, added: Sequence[FeatureKey]) -> list[FeatureKey]:
        """The features a visitor may set: the configured ones, then `added`."""
        return [*dict.fromkeys([*(f.key for f in self.engine.features), *added])]

    def steer_phrase(self, setup: SteeringSetup, phrase, max_features: int) -> tuple[SteeringSetup, str]:
        """One step from a phrase to steering (Goodfire's AutoSteer, done locally): the feature whose steering
        most raises the phrase's words (`features_for_phrase`) as a slider, on, at `RECOMMENDED` of the layer's
        typical norm."""
        found = self.features_for_phrase(phrase, n=1)
        if not found:
            raise UserError(f"No feature of this SAE says {phrase!r}: try another word for it.")
        best = found[0]
        setup, _ = self.add_feature(setup, best.index, max_features)
        key = FeatureKey(self.engine.inspector_layer, best.index)
        strength = float(round(RECOMMENDED * self.norms([FeatureSpec(layer=key.layer, index=key.index)])[key.layer]))
        setup = replace(setup, strengths={**setup.strengths, key: strength})
        return setup, (f"Steering toward {phrase.strip()!r} with feature {best.index} ({self.label(*key)}) at {strength:g}, "
                       "mode add. Send a message; move its slider to push harder or softer.")

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
        found = self.recommendations.get(key) if self.recommendations is not None else None
        if found is not None:
            return start_at(setup, key, found), (f"Added a slider for feature {key.index} ({self.label(*key)}), at its "
                                                 f"recommended {found.summary()}. Send a message.")
        return setup, f"Added a slider for feature {key.index} ({self.label(*key)}). Set its strength, then send a message."

    def plan(self, setup: SteeringSetup) -> SteeringPlan:
        """The steering plan of a validated setup."""
        try:
            features = [replace(f, mode=setup.mode_of(f.key, self.engine.config.feature_mode(f)).mode)
                        for f in self.features_for(setup)]
            plan = self.engine.plan_resolved(setup.strengths, None, features)
            return with_concepts(plan, [(c, self.concept_vectors.get(*c.recipe)) for c in setup.concepts if c.enabled])
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
        text, turns = check_message(inputs.text(message, "message"), self.limits), plain_history(history)
        setup, notices = self.validated(setup)
        budget = min(self.limits.max_prompt_tokens, self._context() - setup.generation.max_new_tokens)
        messages, dropped = fit_history(turns + [{"role": "user", "content": text}], self._count, budget)
        notices = tuple(notices + dropped)
        events: queue.SimpleQueue = queue.SimpleQueue()
        requests = [self.engine.request(messages, self.plan(setup), setup.generation, events=events, tag=0)]
        if setup.compare:
            requests.append(self.engine.request(messages, SteeringPlan(), setup.generation, events=events, tag=1))
        stream = self.engine.stream_many(requests)
        texts, started = ["", ""], time.monotonic()
        try:  # the requests stop however this ends: finished, failed, or closed by Stop before the first token
            yield ChatUpdate("", "" if setup.compare else None, notices)
            for i, piece in stream:
                texts[i] += piece
                yield ChatUpdate(texts[0], texts[1] if setup.compare else None, notices)
        except (torch.OutOfMemoryError, MemoryError):
            raise UserError(visitor_message(MemoryError())) from None
        finally:
            stream.stop()
            self.admission.record(time.monotonic() - started)
            release_free_memory()

    def busy_message(self, waiting: int) -> str:
        """What a chat turned away from a full queue (`waiting` long) is told: when to come back."""
        return self.admission.busy_message(waiting)

    def _count(self, messages: list[dict]) -> int:
        return int(self.engine.encode(messages).shape[-1])

    def _context(self) -> int:
        return int(getattr(self.engine.backend.model_config, "max_position_embeddings", 4096) or 4096)

    def status(self) -> dict:
        """Generations in flight and the model served (counts only, nothing about visitors)."""
        return {"active_generations": self.engine.active_requests, "model": self.engine.config.model}
