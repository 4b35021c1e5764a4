"""The named API (`gradio_client`, raw HTTP): chat, inspect, differential, scan, concept_search, calibrate,
concept_vector, status.

Each endpoint is a plain function over the service, its arguments checked by name where they enter; the
model work runs inside `gpu` (`spaces.GPU` on a Space). `/chat` is served by `cancellable`, so a client's
`job.cancel()` ends the answer at its next token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import gradio as gr

from steering.service.answers import cancellable
from steering.service.demo import DemoService
from steering.service.inputs import whole_number
from steering.service.inspector import DEFAULT_MAX_DENSITY
from steering.service.limits import UserError
from ui.events import readable_errors


class Api:
    def __init__(self, service: DemoService, gpu: Callable):
        self.service = service
        self.chat = gpu(duration=self.chat_seconds)(readable_errors(self.chat))
        for name in ("inspect", "differential", "scan", "concept_search"):
            setattr(self, name, gpu(duration=60)(readable_errors(getattr(self, name))))
        self.calibrate = gpu(duration=240)(readable_errors(self.calibrate))
        self.concept_vector = gpu(duration=120)(readable_errors(self.concept_vector))
        self.endpoints = (self.chat, self.inspect, self.differential, self.scan, self.concept_search, self.calibrate,
                          self.concept_vector, self.status)

    def register(self) -> None:
        """The endpoints, under their names, in the current Blocks."""
        gr.api(cancellable(self.chat), api_name="chat")
        for fn in self.endpoints[1:-1]:
            gr.api(fn, api_name=fn.__name__)
        gr.api(self.status, api_name="status", queue=False)

    def is_endpoint(self, fn) -> bool:
        """Whether `fn` is one of the endpoints, as registered (perhaps wrapped, e.g. by `cancellable`)."""
        while fn is not None:
            if fn in self.endpoints:
                return True
            fn = getattr(fn, "__wrapped__", None)
        return False

    def chat_seconds(self, message, history=None, strengths=None, mode="own", add_features=None, max_new_tokens=None,
                     *rest, **kwargs) -> int:
        """ZeroGPU time for an answer; a max_new_tokens that `chat` will refuse (NaN, text) gets the cap's."""
        cap = self.service.limits.max_new_tokens
        try:
            tokens = cap if max_new_tokens is None else whole_number(max_new_tokens, "max_new_tokens", 1, cap)
        except UserError:
            tokens = cap
        return int(min(300, 20 + tokens / 15))

    def chat(
        self,
        message: str,
        history: list | None = None,
        strengths: dict | None = None,
        mode: str = "own",
        add_features: list | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        modes: dict | None = None,
        concepts: list | None = None,
    ) -> Iterator[str]:
        """Stream a steered answer. strengths: {"L15:123": 80.0, "L15:7": null (off)}; add_features: ["L15:99"];
        mode: one mode for every feature ("own": each its configured one); modes: {"L15:123": "clamp"}, a
        feature's own mode, over `mode`; concepts: [{"phrase": "dogs", "strength": 40, "mode": "add", "layer": 15,
        "source": "written"}], concept vectors to steer with (see /concept_vector)."""
        setup = self.service.setup_from_api(strengths, mode, add_features, max_new_tokens, temperature, top_p,
                                            repetition_penalty, seed, modes, concepts)
        for update in self.service.chat(message, history, setup):
            yield update.steered

    def inspect(self, prompt: str, top_n: int = 10, view: str = "message", max_density: float | None = DEFAULT_MAX_DENSITY) -> list:
        """Top SAE features on the prompt's own tokens (unsteered), over its words (view "message") or at its last
        token ("last"), features firing on more than max_density of tokens left out (null keeps them):
        [{index, label, activation, token}]."""
        return self.service.inspect(prompt, n=10 if top_n is None else top_n, view="message" if view is None else view,
                                    max_density=max_density)

    def differential(self, positive: str, negative: str, top_n: int = 20) -> list:
        """Features separating two prompt sets (one prompt per line)."""
        return self.service.differential(positive, negative, 20 if top_n is None else top_n)

    def scan(self, prompts: str, feature: int) -> dict:
        """One feature's activation on each prompt (one per line), and its fire rate."""
        rows, rate = self.service.scan(prompts, feature)
        return {"rows": rows, "fire_rate": rate}

    def concept_search(self, concept: str, top_n: int = 10) -> list:
        """Features for a concept: prompts about it against matched neutral prompts."""
        return self.service.concept_search(concept, 10 if top_n is None else top_n)

    def calibrate(self, feature: int) -> dict:
        """A feature's recommended mode and strength, from a short sweep (six prompts, eight settings) kept once
        done: {feature, mode, strength, inclusion, fluency_ratio, met, words, summary}."""
        return self.service.calibrate(feature)

    def concept_vector(self, phrase: str, layer: int | None = None, source: str = "written") -> dict:
        """A phrase's concept vector (difference of means of residuals on text about it and on neutral text; source
        "written": sentences that name it, "generated": answers the model writes about it) and the SAE features it
        is made of: {phrase, layer, source, norm, positions, top_features: [{index, label, cosine}],
        decomposition: {explained, terms: [{index, label, coefficient}]}}. Steer with it through /chat's concepts."""
        return self.service.concept_vector(phrase, layer, source)

    def status(self) -> dict:
        """Generations in flight and the model served (counts only, nothing about visitors)."""
        return self.service.status()
