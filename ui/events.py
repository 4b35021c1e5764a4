"""What each event of the page does: plain calls into `steering.service`, shaped for the components.

Handlers read their inputs by component (`values[tab.message]`) and answer with updates by component. The
work that needs the model runs in the functions `Page` wraps with `gpu` (`spaces.GPU` on a Space): they take
and return plain values, since on ZeroGPU they run in a forked worker and what crosses is pickled.
Stop and Clear go through `Answers` (see steering/service/answers.py for why not Gradio's own cancel).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator

import gradio as gr
import pandas as pd

from steering.service import inputs, views
from steering.service.answers import Answers
from steering.service.demo import ChatUpdate, DemoService
from steering.service.errors import visitor_message
from steering.service.limits import UserError
from steering.service.memory import release_free_memory
from steering.service.links import from_query, to_query
from steering.service.setup import SteeringSetup
from ui.controls import MAX_SLOTS
from ui.layout import Card, ChatTab, InspectorTab

EMPTY_BARS = pd.DataFrame({"feature": [], "activation": []})


def readable_errors(fn: Callable) -> Callable:
    """`fn` (plain, generator or async generator) with every failure shown as a readable message, never a
    traceback; the page keeps its state."""
    def shown(exc: Exception) -> gr.Error:
        return exc if isinstance(exc, gr.Error) else gr.Error(visitor_message(exc), print_exception=False)

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen(*args, **kwargs):
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as exc:
                raise shown(exc) from None
        return agen
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise shown(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise shown(exc) from None
    return plain


def session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


class Page:
    """The page's handlers over one service; `gpu` wraps the model work (`spaces.GPU`, or nothing)."""

    def __init__(self, service: DemoService, chat: ChatTab, tab: InspectorTab, gpu: Callable):
        self.service, self.chat, self.tab = service, chat, tab
        self.controls = chat.controls
        self.answers = Answers()
        self.chat_stream = gpu(duration=self.chat_seconds)(self._chat_stream)
        self.panel = gpu(duration=60)(self._panel)
        self.phrase = gpu(duration=60)(self._phrase)
        self.differential = gpu(duration=60)(lambda pos, neg, n: views.differential_table(service.differential(pos, neg, n)))
        self.scan = gpu(duration=60)(service.scan)
        self.concepts = gpu(duration=60)(lambda concept, n: views.concept_table(service.concept_search(concept, n)))
        self.calibration = gpu(duration=240)(service.calibrate)
        self.concept = gpu(duration=120)(lambda setup, phrase: service.add_concept(setup, phrase, MAX_SLOTS))

    # ---- model work (plain values in and out) ------------------------------------------------

    def chat_seconds(self, message, history, setup: SteeringSetup) -> int:
        """ZeroGPU time for one answer: room for the requested tokens (twice with compare)."""
        tokens = min(setup.generation.max_new_tokens, self.service.limits.max_new_tokens)
        return int(min(300, 20 + tokens / 15 * (2 if setup.compare else 1)))

    def _chat_stream(self, message, history, setup: SteeringSetup) -> Iterator[ChatUpdate]:
        yield from self.service.chat(message, history, setup)

    def _panel(self, message: str, setup: SteeringSetup, steered: bool, view: str, density: float | None):
        try:
            return views.inspector_panel(self.service, message, setup, steered, view, density)
        finally:
            release_free_memory()

    def _phrase(self, setup: SteeringSetup, phrase) -> tuple[SteeringSetup, str]:
        return self.service.steer_phrase(setup, phrase, MAX_SLOTS)

    # ---- chat: Send, Stop, Clear ----------------------------------------------------------------

    @readable_errors
    async def answer(self, values: dict, request: gr.Request):
        """Stream the answer to the message; a Stop or Clear of this page (or a newer Send) ends it."""
        c = self.chat
        message, history = values[c.message], list(values[c.chatbot] or [])
        setup = self.controls.read(self.service, values)
        turn = self.answers.begin(session(request), values[c.sent_at])
        asked = history + [{"role": "user", "content": message}]
        shown_notices: set[str] = set()
        try:
            async for update in turn.stream(functools.partial(self.chat_stream, message, history, setup)):
                for note in update.notices:
                    if note not in shown_notices:
                        shown_notices.add(note)
                        gr.Info(note)
                plain = [{"role": "user", "content": message}, {"role": "assistant", "content": update.unsteered or ""}]
                yield {c.chatbot: asked + [{"role": "assistant", "content": update.steered}],
                       c.plain: gr.update(value=plain, visible=update.unsteered is not None), c.message: "",
                       c.last_message: message}
            if turn.cleared:
                yield self.cleared()
        finally:
            self.answers.end(turn)

    async def stop(self, values: dict, request: gr.Request) -> None:
        self.answers.stop(session(request), values[self.chat.stop_at])

    async def clear(self, values: dict, request: gr.Request) -> dict:
        self.answers.stop(session(request), values[self.chat.stop_at], clear=True)
        return self.cleared()

    def cleared(self) -> dict:
        c = self.chat
        return {c.chatbot: [], c.plain: gr.update(value=[]), c.message: "", c.last_message: ""}

    # ---- the inspector after each answer -------------------------------------------------------

    def inspect_panel(self, values: dict) -> dict:
        """The side panel: top features, a bar chart, the top feature on every token, and each token's own
        strongest features (shown when a token is clicked). It never breaks the chat: a failure is its note."""
        c = self.chat
        message = values[c.last_message]
        if not message:
            return {c.table: gr.update(), c.bars: EMPTY_BARS, c.tokens: [], c.per_token: [], c.picked: gr.update(),
                    c.note: "Send a message to see which features fire on it.", c.token_table: gr.update(visible=False)}
        try:
            density = values[c.max_density]
            density = None if density is None else inputs.number(density, "hide features above (%)", 0, 100) / 100
            setup = self.controls.read(self.service, values)
            panel = self.panel(message, setup, bool(values[c.steered_view]), values[c.view] or "message", density)
        except Exception as exc:
            return {c.table: [], c.bars: EMPTY_BARS, c.tokens: [], c.per_token: [], c.picked: gr.update(),
                    c.note: f"Inspector: {visitor_message(exc)}", c.token_table: gr.update(visible=False)}
        return {c.table: panel.table, c.bars: pd.DataFrame(panel.bars), c.tokens: panel.tokens, c.note: panel.note,
                c.picked: gr.update() if panel.top_index is None else panel.top_index, c.per_token: panel.per_token,
                c.token_table: gr.update(visible=False)}

    def token_features(self, per_token, evt: gr.SelectData):
        """Clicking a token of the token view shows that token's strongest features."""
        try:
            rows = per_token[int(evt.index)]
        except (TypeError, ValueError, IndexError):
            return gr.update(visible=False)
        return gr.update(value=rows, visible=True, label=f"Strongest features at {evt.value[0] if evt.value else 'this token'!r}")

    # ---- the setup ------------------------------------------------------------------------------

    @readable_errors
    def add_feature(self, values: dict, picked: gr.Number) -> dict:
        """A slider for the picked feature; every other slider and box keeps what the visitor set."""
        setup, message = self.service.add_feature(self.controls.read(self.service, values), values[picked], MAX_SLOTS)
        gr.Info(message)
        return self.controls.show(self.service, setup, settings=False)

    @readable_errors
    def steer_phrase(self, values: dict) -> dict:
        """From a phrase to a slider: the feature that best says it, on, at a recommended strength."""
        setup, message = self.phrase(self.controls.read(self.service, values), values[self.chat.phrase])
        gr.Info(message)
        return self.controls.show(self.service, setup, settings=False)

    @readable_errors
    def add_concept(self, values: dict) -> dict:
        """A slider for the phrase's concept vector, after the features, on; what it is made of in a message."""
        setup, message = self.concept(self.controls.read(self.service, values), values[self.chat.phrase])
        gr.Info(message)
        return self.controls.show(self.service, setup, settings=False)

    @readable_errors
    def reset(self, values: dict) -> dict:
        """The defaults, keeping the features the visitor added."""
        return self.controls.show(self.service, self.controls.added_setup(self.service, values))

    @readable_errors
    def share(self, values: dict) -> str:
        return to_query(self.controls.read(self.service, values), self.service.defaults(), self.configured_mode)

    def configured_mode(self, key) -> str:
        known = {f.key: f for f in self.service.features_for(SteeringSetup(custom=(key,)))}
        return self.service.engine.config.feature_mode(known[key])

    def load(self, request: gr.Request) -> dict:
        """Apply a share link's query parameters; every part that was ignored is named in a warning."""
        params = dict(request.query_params) if request is not None else {}
        service, defaults = self.service, self.service.defaults()
        d_sae = service.d_sae if any(params.get(p) for p in ("s", "m", "add")) else None
        setup, warnings = from_query(params, defaults, service.engine.n_layers, d_sae, service.known_features)
        try:
            setup, notices = service.validated(setup)
            warnings += notices
        except UserError as exc:
            warnings.append(f"{exc} The default setup is shown.")
            setup = defaults
        for w in warnings:
            gr.Warning(w)
        return self.controls.show(service, setup)

    # ---- feature cards and the inspector tab ----------------------------------------------------

    def card_view(self, card: Card, index) -> dict:
        text, bars = views.feature_card(self.service.card(index))
        return {card.text: gr.update(value=text, visible=True),
                card.bars: gr.update(value=pd.DataFrame(bars), visible=bool(bars["activation"]))}

    @readable_errors
    def calibrate_card(self, card: Card, index) -> dict:
        """The picked feature's recommended mode and strength (swept now if not known), then its card."""
        if index is None:
            raise UserError("Pick a feature first: click a row of a features table, or type its index.")
        self.calibration(index)
        return self.card_view(card, index)

    @readable_errors
    def show_card(self, card: Card, index) -> dict:
        return {card.text: gr.update(), card.bars: gr.update()} if index is None else self.card_view(card, index)

    @readable_errors
    def slot_card(self, slot: int, values: dict) -> dict:
        """The card of the feature on slider `slot` (a feature of the inspector's layer)."""
        card, features = self.chat.card, self.service.features_for(self.controls.added_setup(self.service, values))
        if slot >= len(features):
            return {card.text: gr.update(), card.bars: gr.update()}
        f, layer = features[slot], self.service.engine.inspector_layer
        if f.layer != layer:
            raise UserError(f"Feature {f.key} is on layer {f.layer}; cards are shipped for layer {layer} only.")
        return self.card_view(card, f.index)

    @staticmethod
    def pick_row(evt: gr.SelectData, table):
        """Clicking a features table row picks its feature index."""
        try:
            row = evt.index[0]
            return int(table.iloc[row, 0] if hasattr(table, "iloc") else table[row][0])
        except Exception:
            return gr.update()

    @readable_errors
    def run_differential(self, pos, neg, n):
        return self.differential(pos, neg, int(n or 20))

    @readable_errors
    def run_scan(self, prompts, index):
        if index is None:
            raise UserError("Type a feature index to scan for.")
        rows, rate = self.scan(prompts, index)
        return [[r["prompt"], r["activation"]] for r in rows], f"Feature {int(index)} fired on {rate:.0%} of {len(rows)} prompts."

    @readable_errors
    def run_concept(self, concept, n):
        return self.concepts(concept, int(n or 10))

    @readable_errors
    def show_contexts(self, index):
        if index is None:
            raise UserError("Type a feature index.")
        return views.contexts_text(self.service.contexts(index))
