"""The inspector's side of the service: read-only feature views of a visitor's messages and prompt sets.

A mixin of `DemoService` (it uses the service's engine, limits, labels and setup checks), kept apart so
the chat and setup logic and the read-only views each stay one screen long.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from steering.config import FeatureSpec
from steering.inspection.concept_rank import RankedFeature, features_for_concept, rank_concept
from steering.inspection.concepts import concept_prompt_sets
from steering.inspection.message import MessageCodes, dense_features, top_at_last_token, top_over_message
from steering.inspection.concept_vector import SOURCES, check_phrase, describe
from steering.inspection.stats import fire_rate
from steering.keys import FeatureKey
from steering.service import inputs
from steering.service.concepts import CONCEPT_FRACTION, concept_choice, concept_view
from steering.service.limits import UserError, check_message, clean_text, prompt_lines
from steering.service.setup import SteeringSetup

DEFAULT_MAX_DENSITY = 0.01
"""Features firing on more than 1% of tokens are left out of the inspector by default (adjustable): such a
feature fires somewhere in almost every message, so it crowds out what a message is about."""
VIEWS = ("message", "last")


class Inspection:
    """Read-only views; the host class provides `engine`, `limits`, `info`, `label`, `plan`, `validated`,
    `feature_index`."""

    def check_inspectable(self) -> None:
        if self.engine.config.sae is None:
            raise UserError("This demo has no SAE configured, so the inspector is off: add an `sae:` section to demo.yaml.")

    def message_codes(self, prompt: str, setup: SteeringSetup | None = None, steered: bool = False,
                      max_density: float | None = DEFAULT_MAX_DENSITY) -> MessageCodes:
        """SAE codes at each token of the message (template tokens left out), features denser than
        `max_density` zeroed (None keeps them): unsteered, or under `setup`'s steering."""
        self.check_inspectable()
        text = check_message(inputs.text(prompt, "prompt"), self.limits)
        if max_density is not None:
            max_density = inputs.number(max_density, "max_density", 0.0, 1.0)
        plan = self.plan(self.validated(setup)[0]) if steered and setup is not None else None
        msg = self.engine.message_codes(text, plan=plan)
        return msg.without(dense_features(self.densities(), max_density) if max_density is not None else None)

    def densities(self) -> Tensor | None:
        """Each inspector feature's density as the SAE ships it: measured on held-out text, else the fire rate
        on the text its contexts were read from; None when it ships neither."""
        cards = self.info.cards(self.engine.inspector_layer) if hasattr(self.info, "cards") else None
        if cards is None:
            return None
        if cards.densities is None and cards.contexts is not None:
            cards.stats["density"] = torch.tensor([f["fire_rate"] for f in cards.contexts.features])
        return cards.densities

    def inspect(self, prompt: str, setup: SteeringSetup | None = None, steered: bool = False, n: int = 10,
                view: str = "message", max_density: float | None = DEFAULT_MAX_DENSITY) -> list[dict]:
        """The strongest features on the visitor's words (`view="message"`: over the words of content, with the
        token where each peaks) or at the message's last token (`"last"`); see `inspection.message`."""
        n = inputs.whole_number(n, "top_n", 1, 50)
        view = inputs.choice(view, "view", VIEWS)
        return self.ranked(self.message_codes(prompt, setup, steered, max_density), view, n)

    def ranked(self, msg: MessageCodes, view: str, n: int) -> list[dict]:
        last = len(msg.tokens) - 1
        found = top_over_message(msg, n) if view == "message" else [(a, last) for a in top_at_last_token(msg, n)]
        layer = self.engine.inspector_layer
        return [{"index": a.index, "label": self.label(layer, a.index), "activation": round(a.value, 4),
                 "token": msg.tokens[where]} for a, where in found]

    def differential(self, positive: str, negative: str, n: int = 20) -> list[dict]:
        self.check_inspectable()
        pos = prompt_lines(inputs.text(positive, "positive"), self.limits, "positive")
        neg = prompt_lines(inputs.text(negative, "negative"), self.limits, "negative")
        return self._rows(self.engine.differential(pos, neg, n=inputs.whole_number(n, "top_n", 1, 100)))

    def scan(self, prompts: str, index: int) -> tuple[list[dict], float]:
        """A feature's activation on each prompt, and its fire rate over them."""
        self.check_inspectable()
        lines = prompt_lines(inputs.text(prompts, "prompts"), self.limits, "scan")
        index = self.feature_index(inputs.whole_number(index, "feature"))
        codes = self.engine.encode_prompts(lines)
        rows = [{"prompt": p, "activation": round(float(v), 4)} for p, v in zip(lines, codes[:, index])]
        return rows, fire_rate(codes, index)

    def concept_search(self, concept: str, n: int = 10) -> list[dict]:
        """Features that fire more on prompts about `concept` than on matched neutral prompts (they detect it),
        each with its output score for the concept (`output`: how much steering with it raises the concept's words)."""
        text, n = self._concept(concept), inputs.whole_number(n, "top_n", 1, 50)
        pos, neg = concept_prompt_sets(text)
        rows = self._rows(self.engine.differential(pos, neg, n=n, chat=False))
        gains = {r.index: r.score for r in self._output_ranked(text, [r["index"] for r in rows])}
        return [{**r, "output": round(gains[r["index"]], 4)} for r in rows]

    def features_for_phrase(self, phrase: str, n: int = 5) -> list[RankedFeature]:
        """The features that best say `phrase`: those whose shipped words (label, top words, the tokens steering
        with them raises) name it, best match first, ties by output score (`concept_rank.features_for_concept`);
        when none does, the top of the differential ranking ordered by output score for the phrase. (On the
        shipped SAE, output score alone picks generic features: docs/shipped-sae.md.)"""
        text = self._concept(phrase)
        cards = self.info.cards(self.engine.inspector_layer) if hasattr(self.info, "cards") else None
        named = features_for_concept(cards, text, n=n) if cards is not None else []
        if named:
            return named
        pos, neg = concept_prompt_sets(text)
        return self._output_ranked(text, [r.index for r in self.engine.differential(pos, neg, n=10, chat=False)])[:n]

    def _output_ranked(self, concept: str, candidates: list[int]) -> list[RankedFeature]:
        layer = self.engine.inspector_layer
        return rank_concept(self.engine.backend, layer, self.engine.sae(layer).W_dec, candidates,
                            concept, self.engine.typical_norm(layer), labels=lambda i: self.label(layer, i))

    def _concept(self, concept) -> str:
        self.check_inspectable()
        text = clean_text(inputs.text(concept, "concept")).strip()
        if not text or len(text) > 100:
            raise UserError("Write a word or a short phrase (up to 100 characters) to search for, e.g. 'the ocean'.")
        return text

    def card(self, index) -> dict:
        """Everything the SAE ships about one inspector feature (`inspection.cards.FeatureCards.card`)."""
        self.check_inspectable()
        index = self.feature_index(index)
        found = self.info.card(self.engine.inspector_layer, index) if hasattr(self.info, "card") else None
        card = dict(found or {"index": index, "label": self.label(self.engine.inspector_layer, index)})
        known = self._recommendations() and self._recommendations().get(FeatureKey(self.engine.inspector_layer, card["index"]))
        card["recommended"] = known.summary() if known else None
        return card

    def calibrate(self, index) -> dict:
        """The recommended mode and strength of an inspector feature: known, or swept now (`service.recommend`)."""
        card = self.card(inputs.whole_number(index, "feature"))
        if self._recommendations() is None:
            raise UserError("This demo keeps no calibrations (no SAE folder to read them from).")
        c = self._recommendations().compute(FeatureKey(self.engine.inspector_layer, card["index"]), card.get("label"),
                                            list(card.get("says") or []))
        return {"feature": str(FeatureKey(c.layer, c.index)), "mode": c.mode, "strength": c.strength,
                "inclusion": c.inclusion, "fluency_ratio": c.fluency_ratio, "met": c.met, "words": list(c.words),
                "summary": c.summary()}

    def concept_vector(self, phrase, layer=None, source="written") -> dict:
        """A phrase's concept vector and the SAE features it is made of (`service.concepts.concept_view`)."""
        try:
            phrase = check_phrase(phrase)
        except ValueError as exc:
            raise UserError(f"phrase: {exc}.") from None
        n = self.engine.n_layers
        layer = self.engine.inspector_layer if layer is None else inputs.whole_number(layer, "layer", 0, n - 1)
        source = inputs.choice("written" if source is None else source, "source", SOURCES)
        return concept_view(self.concept_vectors.get(layer, phrase, source), self.label)

    def add_concept(self, setup: SteeringSetup, phrase, max_slots: int) -> tuple[SteeringSetup, str]:
        """`setup` with a slider for the concept vector of `phrase` at the inspector's layer (written examples),
        on at `CONCEPT_FRACTION` of the layer's typical norm, and what it is made of, for the visitor."""
        layer = self.engine.inspector_layer
        c = concept_choice({"phrase": phrase, "layer": layer}, "phrase", self.engine.n_layers)
        if any(x.recipe == c.recipe for x in setup.concepts):
            return setup, f"The concept vector for {c.phrase!r} already has a slider."
        if len(self.features_for(setup)) + len(setup.concepts) >= max_slots:
            raise UserError(f"All {max_slots} slider slots are in use.")
        cv = self.concept_vectors.get(*c.recipe)
        norm = self.norms([FeatureSpec(layer=layer, index=0)])[layer]
        c = replace(c, strength=round(CONCEPT_FRACTION * norm, 1))
        return (replace(setup, concepts=setup.concepts + (c,)),
                f"Added a slider for the {describe(cv, lambda i: self.label(layer, i))}. It is on at {c.strength:g} (add).")

    def _recommendations(self):
        return getattr(self, "recommendations", None)

    def contexts(self, index: int) -> list[str]:
        self.check_inspectable()
        index = self.feature_index(index)
        return self.info.contexts(self.engine.inspector_layer, index) if self.info is not None else []

    def _rows(self, rows) -> list[dict]:
        layer = self.engine.inspector_layer
        return [
            {"index": r.index, "label": self.label(layer, r.index), "score": round(r.score, 4), "mean_pos": round(r.mean_pos, 4),
             "mean_neg": round(r.mean_neg, 4), "fire_pos": round(r.fire_pos, 3), "fire_neg": round(r.fire_neg, 3)}
            for r in rows
        ]
