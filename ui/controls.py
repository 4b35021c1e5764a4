"""The visitor's steering setup as the page's components, read and shown by name.

The generation settings (one control per `GenerationSettings` field, its range from the one set of limits),
the compare box, a row per feature (strength, on box, mode, card button) and the features the visitor added
(a hidden JSON list of keys: no server-side session state, so the page needs no heartbeat connection); after the
features, a row per concept vector, whose recipes (layer, phrase, source) are a second hidden JSON list.
`read` makes the setup from the values an event sends (a dict by component), `show` the updates that display
one; events take `inputs` and update `outputs`, so nothing depends on the order of components.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import gradio as gr

from steering.config import MODES
from steering.config.generation import LIMITS
from steering.service import inputs, views
from steering.service.demo import DemoService
from steering.service.messages import PAGE_NAMES
from steering.service.concepts import ConceptChoice, concept_choice
from steering.service.setup import SteeringSetup

MAX_SLOTS = 12
SLOT_RANGE = 1e9
"""A slot's range as built: Gradio checks a slider's value against the range it holds for the session, and a
session it has forgotten (`--max-sessions`) falls back to this one; each feature's own range is shown by `show`."""
STEP = 0.05
MEANINGS = {"temperature": "0 = greedy", "seed": "-1 = random"}


@dataclass
class Slot:
    """One feature's row: hidden while the setup has fewer features than slots."""

    row: gr.Row
    strength: gr.Slider
    on: gr.Checkbox
    mode: gr.Dropdown
    card: gr.Button


def generation_controls(setup: SteeringSetup, max_new_tokens: int) -> dict[str, gr.components.Component]:
    """A control per generation setting, by field name; `max_new_tokens` is this server's cap."""
    g, controls = setup.generation, {}
    for name, limit in LIMITS.items():
        label = PAGE_NAMES[name] + (f" ({MEANINGS[name]})" if name in MEANINGS else "")
        if name == "seed":
            controls[name] = gr.Number(value=-1 if g.seed is None else g.seed, precision=0, label=label, elem_id="seed")
        elif limit.whole:
            hi = min(int(limit.hi), max_new_tokens)
            controls[name] = gr.Slider(int(limit.lo), hi, value=min(getattr(g, name), hi), step=1, label=label, elem_id=name)
        else:
            lo = STEP if limit.lo_open else limit.lo
            controls[name] = gr.Slider(lo, limit.hi, value=getattr(g, name), step=STEP, label=label, elem_id=name)
    return controls


def slots() -> list[Slot]:
    """`MAX_SLOTS` hidden feature rows; `show` fills them."""
    out = []
    for i in range(MAX_SLOTS):
        with gr.Row(visible=False) as row:
            strength = gr.Slider(-SLOT_RANGE, SLOT_RANGE, value=0, step=0.5, label=f"slot {i}", scale=5,
                                 elem_id=f"strength-{i}")
            on = gr.Checkbox(value=True, label="on", scale=1, min_width=60, elem_id=f"on-{i}")
            mode = gr.Dropdown(list(MODES), value=MODES[0], label="mode", scale=1, min_width=90, elem_id=f"mode-{i}")
            card = gr.Button("card", size="sm", scale=0, min_width=50, elem_id=f"card-{i}")
        out.append(Slot(row, strength, on, mode, card))
    return out


@dataclass
class SetupControls:
    added: gr.JSON
    compare: gr.Checkbox
    generation: dict[str, gr.components.Component]
    slots: list[Slot]
    concepts: gr.JSON

    def concept_rows(self, values: dict, first: int, n_layers: int) -> tuple[ConceptChoice, ...]:
        """The concept vectors on the page: each recipe (layer, phrase, source) of the hidden list with the
        strength, mode and on box of its row, the rows after the `first` feature rows."""
        found = []
        for recipe, s in zip(values.get(self.concepts) or [], self.slots[first:]):
            layer, phrase, source = recipe
            c = concept_choice({"layer": layer, "phrase": phrase, "source": source, "strength": float(values[s.strength]),
                                "mode": values[s.mode]}, f"concept {phrase!r}", n_layers)
            found.append(replace(c, enabled=bool(values[s.on])))
        return tuple(found)

    @property
    def inputs(self) -> set:
        """What `read` needs."""
        per_slot = [c for s in self.slots for c in (s.strength, s.on, s.mode)]
        return {self.added, self.concepts, self.compare, *self.generation.values(), *per_slot}

    @property
    def outputs(self) -> set:
        """What `show` updates."""
        return {self.added, self.concepts, self.compare, *self.generation.values(),
                *(c for s in self.slots for c in (s.row, s.strength, s.on, s.mode))}

    def added_setup(self, service: DemoService, values: dict) -> SteeringSetup:
        """The defaults with the visitor's added features (the page's only state besides its controls)."""
        added = inputs.feature_keys(values[self.added] or [], "the added features")
        setup, _ = service.validated(replace(service.defaults(), custom=added))
        return setup

    def read(self, service: DemoService, values: dict) -> SteeringSetup:
        """The setup the page shows: slot i holds the i-th feature of `service.features_for`."""
        setup = self.added_setup(service, values)
        n = len(service.features_for(setup))
        shown = self.slots[:n]
        setup = service.setup_from_controls(
            setup, values[self.compare], {name: values[c] for name, c in self.generation.items()},
            [values[s.strength] for s in shown], [values[s.on] for s in shown], [values[s.mode] for s in shown])
        return replace(setup, concepts=self.concept_rows(values, n, service.engine.n_layers))


    def show(self, service: DemoService, setup: SteeringSetup, settings: bool = True) -> dict:
        """Updates displaying `setup`: each slot's row, label, range, value, on box and mode, and (with
        `settings`) the generation settings and the compare box."""
        sliders = views.sliders(service, setup)
        updates: dict = {self.added: [str(k) for k in setup.custom],
                         self.concepts: [[c.layer, c.phrase, c.source] for c in setup.concepts]}
        for i, slot in enumerate(self.slots):
            if i < len(sliders):
                s = sliders[i]
                updates |= {slot.row: gr.update(visible=True), slot.on: s.enabled, slot.mode: s.mode,
                            slot.strength: gr.update(label=s.label, info=s.info, minimum=s.minimum, maximum=s.maximum, value=s.value)}
            else:
                updates |= {slot.row: gr.update(visible=False), slot.strength: gr.update(), slot.on: False, slot.mode: gr.update()}
        if settings:
            g = setup.generation
            updates |= {c: (-1 if g.seed is None else g.seed) if name == "seed" else getattr(g, name)
                        for name, c in self.generation.items()}
            updates[self.compare] = setup.compare
        else:
            updates |= {c: gr.update() for c in (self.compare, *self.generation.values())}
        return updates
