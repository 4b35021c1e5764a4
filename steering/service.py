"""What the web app does, as plain Python: validated chat, inspection and feature search.

`app.py` only maps these calls to Gradio components. Every input from a visitor passes
through `limits` here; problems surface as `UserError` with a message to show as it is.
A visitor's setup (`share.SteeringSetup`) travels with each call, so visitors never share
steering, and nothing here changes the shared `Steerer`'s feature list.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, replace
from typing import Iterator, Protocol, Sequence

import torch

from .concepts import concept_prompt_sets
from .config import FeatureSpec
from .generation import Generation
from .hooks import SteeringPlan
from .inspector import fire_rate
from .limits import Limits, UserError, cap_generation, check_message, clamp_strength, clean_text, fit_history, prompt_lines
from .sae_formats import SAEFormatError
from .session import Steerer
from .share import SteeringSetup
from .vectors import VectorsError

log = logging.getLogger("steering.service")


class FeatureInfo(Protocol):
    """What an SAE ships about its features (labels, top contexts); optional."""

    def label(self, layer: int, index: int) -> str | None: ...

    def contexts(self, layer: int, index: int) -> list[str]: ...


@dataclass(frozen=True)
class Slider:
    """One strength control, with a range that means something on its layer."""

    key: str
    label: str
    layer: int
    index: int
    minimum: float
    maximum: float
    value: float  # shown on the slider (the recommended strength while off)
    enabled: bool
    mode: str
    norm: float
    custom: bool


@dataclass(frozen=True)
class ChatUpdate:
    steered: str
    unsteered: str | None
    notices: tuple[str, ...]


def message_text(content) -> str:
    """Text of a chat message's content: a string, or Gradio 6's list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", "")) if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return ""


def plain_history(history: Sequence[dict] | None) -> list[dict]:
    """Gradio chat history as `{"role", "content": str}` turns, user and assistant only."""
    turns = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            text = clean_text(message_text(m.get("content")))
            if text:
                turns.append({"role": m["role"], "content": text})
    return turns


def _merge(generations: Sequence[Generation]) -> Iterator[tuple[int, str]]:
    """(which, piece) from several generations as they arrive; closing it stops them all."""
    events: queue.Queue = queue.Queue()

    def pump(i: int, g: Generation) -> None:
        try:
            for piece in g:
                events.put((i, piece, None))
        except BaseException as exc:  # handed to the consumer
            events.put((i, None, exc))
        events.put((i, None, None))

    threads = [threading.Thread(target=pump, args=(i, g), daemon=True) for i, g in enumerate(generations)]
    for t in threads:
        t.start()
    open_count = len(generations)
    try:
        while open_count:
            i, piece, exc = events.get()
            if exc is not None:
                raise exc
            if piece is None:
                open_count -= 1
            else:
                yield i, piece
    finally:
        for g in generations:
            g.stop()
        for t in threads:
            t.join()


OUT_OF_MEMORY = ("The server ran out of memory while answering: try fewer max new tokens, a shorter message, "
                 "or Clear to start a shorter conversation, then send again. Your conversation is kept.")


class DemoService:
    def __init__(self, steerer: Steerer, limits: Limits = Limits(), info: FeatureInfo | None = None):
        self.steerer, self.limits, self.info = steerer, limits, info
        width = getattr(steerer.model.config, "hidden_size", None)
        wrong = [v for v in steerer.vectors.vectors.values() if width is not None and v.direction.shape[-1] != width]
        if wrong:  # refuse at start, not with a shape error on a visitor's first message
            v = wrong[0]
            raise ValueError(
                f"The steering vector of feature L{v.layer}:{v.index} has width {v.direction.shape[-1]}, but the model's "
                f"residual width is {width}: the SAE in demo.yaml (or steering_vectors.pt) was made for another model. "
                f"Point `sae:` at an SAE for {steerer.config.model}, then run `python -m steering.extract`."
            )

    # ---- setup ----------------------------------------------------------------------------

    def defaults(self) -> SteeringSetup:
        return SteeringSetup(
            strengths=self.steerer.default_strengths(),
            generation=self.steerer.config.generation,
        )

    @property
    def d_sae(self) -> int | None:
        """The inspector layer's SAE width, when an SAE is configured (it is loaded on first use)."""
        if self.steerer.config.sae is None:
            return None
        return self.steerer.sae().d_sae

    def label(self, layer: int, index: int) -> str:
        found = self.info.label(layer, index) if self.info is not None else None
        return found or f"feature {index} @ layer {layer}"

    def features_for(self, setup: SteeringSetup) -> list[FeatureSpec]:
        """The configured features, then the visitor's own."""
        features = list(self.steerer.features)
        known = {f.key for f in features}
        for layer, index in setup.custom:
            if f"L{layer}:{index}" not in known:
                features.append(FeatureSpec(layer=layer, index=index, strength=0.0, label=self.label(layer, index)))
        return features

    def slider_range(self, f: FeatureSpec) -> tuple[float, float]:
        """The feature's own range, else plus or minus the layer's typical residual norm."""
        if f.range is not None:
            return f.range
        norm = float(round(self.steerer.typical_norm(f.layer)))
        return (-norm, norm)

    def sliders(self, setup: SteeringSetup) -> list[Slider]:
        configured = {f.key for f in self.steerer.features}
        out = []
        for f in self.features_for(setup):
            lo, hi = self.slider_range(f)
            value = setup.strengths.get(f.key, f.strength if f.enabled else None)
            out.append(Slider(
                f.key, f.display_name, f.layer, f.index, lo, hi, f.strength if value is None else value, value is not None,
                setup.mode or self.steerer.config.feature_mode(f), self.steerer.typical_norm(f.layer), f.key not in configured,
            ))
        return out

    def validated(self, setup: SteeringSetup) -> tuple[SteeringSetup, list[str]]:
        """The setup with strengths inside their ranges and generation within the caps."""
        notices: list[str] = []
        if len(setup.custom) > self.limits.max_custom_features:
            raise UserError(f"At most {self.limits.max_custom_features} features can be added; remove some first.")
        n_layers, d_sae = self.steerer.n_layers, (self.d_sae if setup.custom else None)
        for layer, index in setup.custom:
            if not (isinstance(layer, int) and isinstance(index, int)) or isinstance(layer, bool) or isinstance(index, bool):
                raise UserError(f"Feature layer and index must be whole numbers, got {layer!r}, {index!r}.")
            if not 0 <= layer < n_layers:
                raise UserError(f"Layer {layer} is outside this model: use 0 to {n_layers - 1}.")
            if d_sae is not None and not 0 <= index < d_sae:
                raise UserError(f"Feature {index} is outside the SAE: use 0 to {d_sae - 1}.")
        features = {f.key: f for f in self.features_for(setup)}
        strengths: dict[str, float | None] = {}
        for key, value in setup.strengths.items():
            if key not in features:
                notices.append(f"Strength for unknown feature {key} was ignored.")
                continue
            if value is None:
                strengths[key] = None
                continue
            lo, hi = self.slider_range(features[key])
            strengths[key], note = clamp_strength(value, lo, hi, features[key].display_name)
            notices += note
        generation, note = cap_generation(setup.generation, self.limits)
        return replace(setup, strengths=strengths, generation=generation), notices + note

    def plan(self, setup: SteeringSetup) -> SteeringPlan:
        try:
            return self.steerer.plan(setup.strengths, setup.mode, features=self.features_for(setup))
        except (SAEFormatError, VectorsError) as exc:  # an added feature the SAE cannot serve; the server's paths stay private
            log.warning("steering vector for an added feature unavailable: %s", exc)
            layers = sorted({layer for layer, _ in setup.custom})
            raise UserError(f"An added feature (layer {', '.join(map(str, layers)) or '?'}) cannot be read from this demo's SAE. "
                            f"Add features at layer {self.steerer.inspector_layer}, the inspector's layer.") from None

    # ---- chat -----------------------------------------------------------------------------

    def chat(self, message: str, history: Sequence[dict] | None, setup: SteeringSetup) -> Iterator[ChatUpdate]:
        """Stream the steered answer (and, with `setup.compare`, the unsteered one beside it)."""
        text = check_message(message, self.limits)
        setup, notices = self.validated(setup)
        budget = min(self.limits.max_prompt_tokens, self._context() - setup.generation.max_new_tokens)
        messages, dropped = fit_history(plain_history(history) + [{"role": "user", "content": text}], self._count, budget)
        notices = tuple(notices + dropped)
        plan = self.plan(setup)
        gens: list[Generation] = []
        texts = ["", ""]
        try:  # the generations stop however this ends: finished, failed, or closed by Stop before the first token
            gens.append(self.steerer.stream(messages, plan=plan, settings=setup.generation))
            if setup.compare:
                gens.append(self.steerer.stream(messages, plan=SteeringPlan(), settings=setup.generation))
            yield ChatUpdate("", "" if setup.compare else None, notices)
            for i, piece in _merge(gens):
                texts[i] += piece
                yield ChatUpdate(texts[0], texts[1] if setup.compare else None, notices)
        except (torch.OutOfMemoryError, MemoryError):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise UserError(OUT_OF_MEMORY) from None
        finally:
            for g in gens:
                g.stop()

    def _count(self, messages: list[dict]) -> int:
        return int(self.steerer.encode(messages).shape[-1])

    def _context(self) -> int:
        return int(getattr(self.steerer.model.config, "max_position_embeddings", 4096) or 4096)

    # ---- inspection (read-only) -------------------------------------------------------------

    def _check_inspectable(self) -> None:
        if self.steerer.config.sae is None:
            raise UserError("This demo has no SAE configured, so the inspector is off: add an `sae:` section to demo.yaml.")

    def _index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            if isinstance(index, float) and index.is_integer():
                index = int(index)
            else:
                raise UserError(f"The feature index must be a whole number, got {index!r}.")
        d_sae = self.d_sae
        if not 0 <= index < d_sae:
            raise UserError(f"Feature {index} is outside the SAE: use 0 to {d_sae - 1}.")
        return index

    def inspect(self, prompt: str, setup: SteeringSetup | None = None, steered: bool = False, n: int = 10) -> list[dict]:
        """Top features at the prompt's last token: unsteered, or under `setup`'s steering."""
        self._check_inspectable()
        text = check_message(prompt, self.limits)
        plan = self.plan(self.validated(setup)[0]) if steered and setup is not None else None
        layer = self.steerer.inspector_layer
        rows = self.steerer.inspect(text, n=max(1, min(int(n), 50)), plan=plan)
        return [{"index": r.index, "label": self.label(layer, r.index), "activation": round(r.value, 4)} for r in rows]

    def token_activations(self, prompt: str, index: int) -> list[tuple[str, float]]:
        self._check_inspectable()
        return self.steerer.token_activations(check_message(prompt, self.limits), self._index(index))

    def differential(self, positive: str, negative: str, n: int = 20) -> list[dict]:
        self._check_inspectable()
        pos = prompt_lines(positive, self.limits, "positive")
        neg = prompt_lines(negative, self.limits, "negative")
        return self._rows(self.steerer.differential(pos, neg, n=max(1, min(int(n), 100))))

    def scan(self, prompts: str, index: int) -> tuple[list[dict], float]:
        """A feature's activation on each prompt, and its fire rate over them."""
        self._check_inspectable()
        lines = prompt_lines(prompts, self.limits, "scan")
        codes = self.steerer.encode_prompts(lines)
        index = self._index(index)
        rows = [{"prompt": p, "activation": round(float(v), 4)} for p, v in zip(lines, codes[:, index])]
        return rows, fire_rate(codes, index)

    def concept_search(self, concept: str, n: int = 10) -> list[dict]:
        """Features that fire more on prompts about `concept` than on matched neutral prompts."""
        self._check_inspectable()
        text = clean_text(concept).strip()
        if not text or len(text) > 100:
            raise UserError("Write a word or a short phrase (up to 100 characters) to search for, e.g. 'the ocean'.")
        pos, neg = concept_prompt_sets(text)
        return self._rows(self.steerer.differential(pos, neg, n=max(1, min(int(n), 50)), chat=False))

    def contexts(self, index: int) -> list[str]:
        self._check_inspectable()
        index = self._index(index)
        return self.info.contexts(self.steerer.inspector_layer, index) if self.info is not None else []

    def _rows(self, rows) -> list[dict]:
        layer = self.steerer.inspector_layer
        return [
            {"index": r.index, "label": self.label(layer, r.index), "score": round(r.score, 4), "mean_pos": round(r.mean_pos, 4),
             "mean_neg": round(r.mean_neg, 4), "fire_pos": round(r.fire_pos, 3), "fire_neg": round(r.fire_neg, 3)}
            for r in rows
        ]
