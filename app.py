"""Steer a chat model with SAE features, and see which features fire: the Gradio app.

Layout and event wiring only; the work is in `steering.service.demo`. Runs as a Hugging Face Space
on ZeroGPU (`spaces.GPU` is a no-op elsewhere) and as `python app.py` on a laptop CPU.
Environment: STEERING_CONFIG (default demo.yaml), STEERING_CONCURRENCY (default 4),
STEERING_BATCH_WINDOW_MS (default 15; 0 turns batching off), STEERING_MAX_NEW_TOKENS (server cap,
default 512), STEERING_MAX_QUEUE (requests waiting at most, default 64), PORT / GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from dataclasses import replace
from typing import Iterator

import gradio as gr
import pandas as pd
import spaces
from gradio.queueing import Queue

from steering import Engine
from steering.config import MODES
from steering.generate.stoppable import cancellable
from steering.inspection.labels import load_feature_info
from steering.service import views
from steering.service.admission import Admission
from steering.service.demo import DemoService
from steering.service import inputs
from steering.service.errors import visitor_message
from steering.service.inspector import DEFAULT_MAX_DENSITY
from steering.service.inputs import arguments, whole_number
from steering.service.limits import Limits, UserError
from steering.service.setup import SteeringSetup, from_query, to_query
from ui.patch_busy_queue import busy_queue

log = logging.getLogger("steering.app")

# Gradio runs every event inside a matplotlib backend switch (gradio.utils.MatplotlibBackendMananger), which imports
# matplotlib, when installed, and resolves its default backend on the first event: 0.4 s of the first visitor's
# first answer (benchmarks/app_latency.py). The app draws no matplotlib figures: name the backend and import it now.
os.environ.setdefault("MPLBACKEND", "agg")
try:
    import matplotlib  # noqa: F401
except ImportError:  # not a requirement of the app
    pass

MAX_SLOTS = 12
CONFIG = os.environ.get("STEERING_CONFIG", "demo.yaml")
LIMITS = Limits(max_new_tokens=int(os.environ.get("STEERING_MAX_NEW_TOKENS", "512")))
CONCURRENCY = int(os.environ.get("STEERING_CONCURRENCY", "4"))
MAX_QUEUE = int(os.environ.get("STEERING_MAX_QUEUE", "64"))
ON_ZEROGPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # each call is its own process there
ENGINE = Engine.from_config(  # loaded once, at import (ZeroGPU moves it to the GPU per call)
    CONFIG, batching=not ON_ZEROGPU, batch_window_s=float(os.environ.get("STEERING_BATCH_WINDOW_MS", "15")) / 1000,
    max_batch=max(CONCURRENCY, 1),
)


@spaces.GPU(duration=30)
def measure_norms(layers: tuple[int, ...]) -> dict[int, float]:
    """The layers' typical residual norms (slider ranges): a model forward, so a GPU call on ZeroGPU; the
    floats come back to this process, which keeps them for every later page."""
    return ENGINE.norms.measure(layers)


SERVICE = DemoService(ENGINE, LIMITS, load_feature_info(ENGINE.config), measure_norms=measure_norms,
                      admission=Admission(MAX_QUEUE, workers=CONCURRENCY))
DEFAULTS = SERVICE.defaults()
if not ON_ZEROGPU:  # measured now, not on the first visitor's page load; on ZeroGPU no forward may run here
    SERVICE.norms(SERVICE.features_for(DEFAULTS))


# ---- errors: a readable message, never a traceback, and the page keeps its state ---------------

def readable_errors(fn):
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise gr.Error(visitor_message(exc), print_exception=False) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise gr.Error(visitor_message(exc), print_exception=False) from None
    return wrapper


# ---- controls <-> setup ----------------------------------------------------------------------

def current_setup(setup: SteeringSetup, mode: str, compare: bool, controls: tuple) -> SteeringSetup:
    """The setup as the page shows it; the inputs end with the generation settings, the sliders and the on boxes."""
    return SERVICE.setup_from_controls(setup, mode, compare, controls[:5], controls[5:5 + MAX_SLOTS], controls[5 + MAX_SLOTS:])


def slot_updates(setup: SteeringSetup) -> list:
    """Visibility, label, range and value of every slot, then its on/off box."""
    sliders = views.sliders(SERVICE, setup)
    rows, bars, boxes = [], [], []
    for i in range(MAX_SLOTS):
        if i < len(sliders):
            s = sliders[i]
            rows.append(gr.update(visible=True))
            bars.append(gr.update(label=s.label, info=s.info, minimum=s.minimum, maximum=s.maximum, value=s.value))
            boxes.append(gr.update(value=s.enabled))
        else:
            rows.append(gr.update(visible=False))
            bars.append(gr.update())
            boxes.append(gr.update(value=False))
    return rows + bars + boxes


def control_values(setup: SteeringSetup) -> list:
    g = setup.generation
    return [setup.mode or "own", setup.compare, g.max_new_tokens, g.temperature, g.top_p, g.repetition_penalty, -1 if g.seed is None else g.seed]


# ---- events ----------------------------------------------------------------------------------

def chat_duration(message, history, setup, mode, compare, *rest) -> int:
    """ZeroGPU time for one answer: room for the requested tokens (twice with compare)."""
    try:
        tokens = min(float(rest[0]), LIMITS.max_new_tokens)
    except (IndexError, TypeError, ValueError):
        tokens = LIMITS.max_new_tokens
    return int(min(300, 20 + tokens / 15 * (2 if compare else 1)))


@spaces.GPU(duration=chat_duration)
@readable_errors
def respond(message, history, setup, mode, compare, *controls):
    setup = current_setup(setup, mode, compare, controls)
    history = list(history or [])
    shown_notices = set()
    for update in SERVICE.chat(message, history, setup):
        for note in update.notices:
            if note not in shown_notices:
                shown_notices.add(note)
                gr.Info(note)
        steered = history + [{"role": "user", "content": message}, {"role": "assistant", "content": update.steered}]
        plain = [{"role": "user", "content": message}, {"role": "assistant", "content": update.unsteered or ""}]
        yield steered, gr.update(value=plain, visible=update.unsteered is not None), "", message


@spaces.GPU(duration=60)
def inspect_panel(message, setup, steered_view, view, max_density, mode, compare, *controls):
    """The side panel after each message: top features, a bar chart, the top feature on every token, and each
    token's own strongest features (shown when a token is clicked)."""
    empty = pd.DataFrame({"feature": [], "activation": []})
    if not message:
        return gr.update(), empty, [], "Send a message to see which features fire on it.", gr.update(), [], gr.update(visible=False)
    try:
        density = None if max_density is None else inputs.number(max_density, "hide features above (%)", 0, 100) / 100
        panel = views.inspector_panel(SERVICE, message, current_setup(setup, mode, compare, controls), bool(steered_view),
                                      view or "message", density)
    except Exception as exc:  # the panel must never break the chat
        return [], empty, [], f"Inspector: {visitor_message(exc)}", gr.update(), [], gr.update(visible=False)
    picked_update = gr.update() if panel.top_index is None else gr.update(value=panel.top_index)
    return (panel.table, pd.DataFrame(panel.bars), panel.tokens, panel.note, picked_update, panel.per_token,
            gr.update(visible=False))


def token_features(per_token, evt: gr.SelectData):
    """Clicking a token of the inspector's token view shows that token's strongest features."""
    try:
        rows = per_token[int(evt.index)]
    except (TypeError, ValueError, IndexError):
        return gr.update(visible=False)
    return gr.update(value=rows, visible=True, label=f"Strongest features at {evt.value[0] if evt.value else 'this token'!r}")


@readable_errors
def add_custom(setup: SteeringSetup, index, mode, compare, *controls):
    """A slider for the picked feature; every other slider and box keeps what the visitor set."""
    setup, message = SERVICE.add_feature(current_setup(setup, mode, compare, controls), index, MAX_SLOTS)
    gr.Info(message)
    return [setup] + slot_updates(setup)


@spaces.GPU(duration=60)
@readable_errors
def steer_phrase(setup: SteeringSetup, phrase, mode, compare, *controls):
    """From a phrase to a slider: the feature that best says it, on, at a recommended strength."""
    setup, message = SERVICE.steer_phrase(current_setup(setup, mode, compare, controls), phrase, MAX_SLOTS)
    gr.Info(message)
    return [setup] + slot_updates(setup)


def card_view(index) -> tuple:
    text, bars = views.feature_card(SERVICE.card(index))
    return gr.update(value=text, visible=True), gr.update(value=pd.DataFrame(bars), visible=bool(bars["activation"]))


@readable_errors
def show_card(index):
    if index is None:
        return gr.update(), gr.update()
    return card_view(index)


@readable_errors
def slot_card(slot: int, setup: SteeringSetup):
    """The card of the feature on slider `slot` (a feature of the inspector's layer)."""
    features = SERVICE.features_for(setup)
    if slot >= len(features):
        return gr.update(), gr.update()
    f = features[slot]
    if f.layer != ENGINE.inspector_layer:
        raise UserError(f"Feature {f.key} is on layer {f.layer}; cards are shipped for layer {ENGINE.inspector_layer} only.")
    return card_view(f.index)


def feature_card_section(where: str):
    """The feature card: Markdown and an activation histogram, hidden until a feature is picked."""
    with gr.Accordion("Feature card", open=True):
        text = gr.Markdown("Click a row of a features table, or a slider's \"card\" button, to see what the feature means.", elem_id=f"feature-card-{where}")
        bars = gr.BarPlot(x="activation", y="tokens", height=180, x_title="activation", y_title="held-out tokens",
                          visible=False, sort=None, elem_id=f"feature-histogram-{where}")
    return text, bars


def reset_defaults(setup: SteeringSetup):
    fresh = replace(DEFAULTS, custom=setup.custom)
    return [fresh] + slot_updates(fresh) + control_values(fresh)


@readable_errors
def share_query(setup, mode, compare, *controls) -> str:
    return to_query(current_setup(setup, mode, compare, controls), DEFAULTS)


def on_load(request: gr.Request):
    """Apply a share link's query parameters; bad ones are named in a warning."""
    params = dict(request.query_params) if request is not None else {}
    setup, warnings = from_query(params, DEFAULTS, ENGINE.n_layers, SERVICE.d_sae if "add" in params else None)
    try:
        setup, notices = SERVICE.validated(setup)
        warnings += notices
    except UserError as exc:
        warnings.append(f"{exc} The default setup is shown.")
        setup = DEFAULTS
    for w in warnings:
        gr.Warning(w)
    return [setup] + slot_updates(setup) + control_values(setup)


def pick_row(evt: gr.SelectData, table):
    """Clicking a features table row picks its feature index."""
    try:
        row = evt.index[0]
        return int(table.iloc[row, 0] if hasattr(table, "iloc") else table[row][0])
    except Exception:
        return gr.update()


@spaces.GPU(duration=60)
@readable_errors
def run_differential(pos, neg, n):
    return views.differential_table(SERVICE.differential(pos, neg, int(n or 20)))


@spaces.GPU(duration=60)
@readable_errors
def run_scan(prompts, index):
    if index is None:
        raise UserError("Type a feature index to scan for.")
    rows, rate = SERVICE.scan(prompts, index)
    return [[r["prompt"], r["activation"]] for r in rows], f"Feature {int(index)} fired on {rate:.0%} of {len(rows)} prompts."


@spaces.GPU(duration=60)
@readable_errors
def run_concept(concept, n):
    return views.concept_table(SERVICE.concept_search(concept, int(n or 10)))


@readable_errors
def show_contexts(index):
    if index is None:
        raise UserError("Type a feature index.")
    return views.contexts_text(SERVICE.contexts(index))


# ---- named API endpoints (gradio_client) -------------------------------------------------------

def api_chat_duration(message, history=None, strengths=None, mode="own", add_features=None, max_new_tokens=None, *rest, **kwargs) -> int:
    """ZeroGPU time for an API answer; a max_new_tokens that api_chat will refuse (NaN, -inf, text) gets the cap's."""
    try:
        tokens = whole_number(max_new_tokens, "max_new_tokens", 1, LIMITS.max_new_tokens)
    except UserError:
        tokens = LIMITS.max_new_tokens
    return chat_duration(message, history, None, mode, False, tokens)


@spaces.GPU(duration=api_chat_duration)
@readable_errors
def api_chat(
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
) -> Iterator[str]:
    """Stream a steered answer. strengths: {"L15:123": 80.0, "L15:7": null (off)}; add_features: ["L15:99"]."""
    setup = SERVICE.setup_from_api(strengths, mode, add_features, max_new_tokens, temperature, top_p, repetition_penalty, seed)
    for update in SERVICE.chat(message, history, setup):
        yield update.steered


@spaces.GPU(duration=60)
@readable_errors
def api_inspect(prompt: str, top_n: int = 10, view: str = "message", max_density: float | None = DEFAULT_MAX_DENSITY) -> list:
    """Top SAE features on the prompt's own tokens (unsteered), over its words (view "message") or at its last
    token ("last"), features firing on more than max_density of tokens left out (null keeps them):
    [{index, label, activation, token}]."""
    return SERVICE.inspect(prompt, n=10 if top_n is None else top_n, view="message" if view is None else view,
                           max_density=max_density)


@spaces.GPU(duration=60)
@readable_errors
def api_differential(positive: str, negative: str, top_n: int = 20) -> list:
    """Features separating two prompt sets (one prompt per line)."""
    return SERVICE.differential(positive, negative, 20 if top_n is None else top_n)


@spaces.GPU(duration=60)
@readable_errors
def api_scan(prompts: str, feature: int) -> dict:
    """One feature's activation on each prompt (one per line), and its fire rate."""
    rows, rate = SERVICE.scan(prompts, feature)
    return {"rows": rows, "fire_rate": rate}


@spaces.GPU(duration=60)
@readable_errors
def api_concept_search(concept: str, top_n: int = 10) -> list:
    """Features for a concept: prompts about it against matched neutral prompts."""
    return SERVICE.concept_search(concept, 10 if top_n is None else top_n)


def api_status() -> dict:
    """Generations in flight and the model served (counts only, nothing about visitors)."""
    return SERVICE.status()


API_ENDPOINTS = (api_chat, api_inspect, api_differential, api_scan, api_concept_search, api_status)


def api_endpoint(fn) -> bool:
    """Whether `fn` is one of `API_ENDPOINTS`, as registered (perhaps wrapped, e.g. by `cancellable`)."""
    while fn is not None:
        if fn in API_ENDPOINTS:
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def api_arguments(validate):
    """`Blocks.validate_inputs`, stricter for the named endpoints: Gradio drops values past a function's
    parameters without a word and answers too few with a traceback; `inputs.arguments` refuses extras by
    name and gives missing ones their defaults. Every other event is left to Gradio."""
    @functools.wraps(validate)
    def check(self, block_fn, values):
        if api_endpoint(block_fn.fn) and isinstance(values, list):
            try:
                values[:] = arguments(f"/{block_fn.api_name}", block_fn.input_parameter_names, [b.value for b in block_fn.inputs], values)
            except UserError as exc:
                raise gr.Error(visitor_message(exc), print_exception=False) from None
        return validate(self, block_fn, values)
    return check


gr.Blocks.validate_inputs = api_arguments(gr.Blocks.validate_inputs)


# ---- layout ----------------------------------------------------------------------------------

INTRO = f"""# Steering with SAE features
Chat with **{ENGINE.config.model.removeprefix('embedded:')}** while pushing its residual stream along sparse-autoencoder
feature directions. Move a slider, send a message, and compare with the unsteered answer. The inspector shows which
features fire on your message."""

SPACE_ID = os.environ.get("SPACE_ID")

with gr.Blocks(title="Steering with SAE features") as demo:
    setup_state = gr.State(DEFAULTS)
    per_token = gr.State([])  # the inspector's strongest features at each token of the last message
    last_message = gr.State("")
    with gr.Row():
        gr.Markdown(INTRO)
        if SPACE_ID:
            gr.DuplicateButton("Duplicate this Space", scale=0)
    with gr.Tabs():
        with gr.Tab("Chat", id="chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        chatbot = gr.Chatbot(label="Steered", height=460, elem_id="steered-chat")
                        plain_chatbot = gr.Chatbot(label="Unsteered (same prompt and seed)", height=460, visible=False, elem_id="plain-chat")
                    msg = gr.Textbox(placeholder="Type a message and press Enter (Shift+Enter: a new line)", show_label=False, lines=1, max_lines=8, elem_id="message")
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="send")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                        clear = gr.Button("Clear", elem_id="clear")
                    with gr.Accordion("Generation settings", open=False):
                        g = DEFAULTS.generation
                        max_tokens = gr.Slider(1, LIMITS.max_new_tokens, value=min(g.max_new_tokens, LIMITS.max_new_tokens), step=1, label="Max new tokens")
                        temperature = gr.Slider(0.0, 2.0, value=g.temperature, step=0.05, label="Temperature (0 = greedy)")
                        top_p = gr.Slider(0.05, 1.0, value=g.top_p, step=0.05, label="Top-p")
                        rep = gr.Slider(0.8, 2.0, value=g.repetition_penalty, step=0.05, label="Repetition penalty")
                        seed = gr.Number(value=-1 if g.seed is None else g.seed, precision=0, label="Seed (-1 = random)")
                with gr.Column(scale=2):
                    gr.Markdown("### Steering")
                    mode = gr.Radio(["own", *MODES], value="own", label="Mode", info="add: push along the feature · clamp: set its component · pin: set the SAE's activation · own: each feature's configured mode", elem_id="mode")
                    compare = gr.Checkbox(label="Compare with the unsteered answer", value=False, elem_id="compare")
                    if ENGINE.notice:
                        gr.Markdown(f"_{ENGINE.notice}_")
                    if ENGINE.backend == "nnsight":
                        gr.Markdown("_Steering runs through the NNsight backend (`backend: nnsight` in the config): the same edits as the hooks backend, written as nnsight interventions; the position options are not available with it._")
                    if not ENGINE.features:
                        gr.Markdown("_No features configured in demo.yaml yet: add one from the inspector (\"Steer with this feature\")._")
                    slot_rows, slot_sliders, slot_checks, slot_cards = [], [], [], []
                    for i in range(MAX_SLOTS):
                        with gr.Row(visible=False) as row:
                            slot_sliders.append(gr.Slider(-100, 100, value=0, step=0.5, label=f"slot {i}", scale=5, elem_id=f"strength-{i}"))
                            slot_checks.append(gr.Checkbox(value=True, label="on", scale=1, min_width=60, elem_id=f"on-{i}"))
                            slot_cards.append(gr.Button("card", size="sm", scale=0, min_width=50, elem_id=f"card-{i}"))
                        slot_rows.append(row)
                    with gr.Row():
                        reset = gr.Button("Reset to defaults", elem_id="reset")
                        share = gr.Button("Copy share link", elem_id="share")
                    share_box = gr.Textbox(label="Share link", interactive=False, elem_id="share-link")
                    with gr.Row():
                        phrase = gr.Textbox(label="Steer toward a phrase", placeholder="the ocean", scale=3, elem_id="phrase")
                        phrase_go = gr.Button("Find a feature", scale=1, elem_id="phrase-go")
                    gr.Markdown("### Inspector")
                    with gr.Row():
                        view = gr.Radio([("Whole message", "message"), ("Last token", "last")], value="message", label="View", elem_id="view")
                        max_density = gr.Number(value=100 * DEFAULT_MAX_DENSITY, minimum=0, maximum=100, label="Hide features firing on more than (% of tokens)", elem_id="max-density")
                    steered_view = gr.Checkbox(label="Inspect under the current steering", value=False)
                    panel_note = gr.Markdown("Send a message to see which features fire on it.", elem_id="panel-note")
                    top_table = gr.Dataframe(headers=["feature", "label", "activation", "token"], interactive=False, elem_id="top-features")
                    top_bars = gr.BarPlot(x="feature", y="activation", sort="-y", height=220, show_label=False, x_title="feature index")
                    token_view = gr.HighlightedText(label="Top feature on each token (click a token for its own)", combine_adjacent=False, elem_id="token-view")
                    token_table = gr.Dataframe(headers=["feature", "label", "activation"], interactive=False, visible=False, elem_id="token-features")
                    with gr.Row():
                        picked = gr.Number(label="Feature index", precision=0, elem_id="picked-feature")
                        steer_with = gr.Button("Steer with this feature", elem_id="steer-with")
                    card_text, card_bars = feature_card_section("chat")
        with gr.Tab("Inspector", id="inspector"):
            gr.Markdown("Read-only: nothing here generates or steers. One prompt per line.")
            with gr.Accordion("Concept search", open=True):
                with gr.Row():
                    concept = gr.Textbox(label="Concept", placeholder="the ocean", elem_id="concept")
                    concept_n = gr.Number(value=10, precision=0, label="Top N")
                    concept_go = gr.Button("Search", variant="primary")
                concept_table = gr.Dataframe(headers=["feature", "label", "score", "output score", "fire (concept)", "fire (neutral)"], interactive=False, elem_id="concept-table")
            with gr.Accordion("Differential features", open=False):
                with gr.Row():
                    positive = gr.Textbox(label="Positive prompts", lines=6)
                    negative = gr.Textbox(label="Negative prompts", lines=6)
                diff_n = gr.Number(value=20, precision=0, label="Top N")
                diff_go = gr.Button("Rank features")
                diff_table = gr.Dataframe(headers=["feature", "label", "score", "mean +", "mean -", "fire +", "fire -"], interactive=False)
            with gr.Accordion("Scan prompts for a feature", open=False):
                scan_prompts = gr.Textbox(label="Prompts", lines=6)
                scan_index = gr.Number(label="Feature index", precision=0)
                scan_go = gr.Button("Scan")
                scan_rate = gr.Markdown()
                scan_table = gr.Dataframe(headers=["prompt", "activation"], interactive=False)
            with gr.Accordion("Top-activating contexts", open=False):
                ctx_index = gr.Number(label="Feature index", precision=0)
                ctx_go = gr.Button("Show")
                ctx_text = gr.Markdown()
            with gr.Row():
                picked2 = gr.Number(label="Feature index", precision=0, elem_id="picked-feature-2")
                steer_with2 = gr.Button("Steer with this feature")
            card_text2, card_bars2 = feature_card_section("inspector")

    gen_controls = [max_tokens, temperature, top_p, rep, seed]
    controls = gen_controls + slot_sliders + slot_checks
    slot_outputs = slot_rows + slot_sliders + slot_checks
    control_outputs = [mode, compare] + gen_controls

    chat_inputs = [msg, chatbot, setup_state, mode, compare] + controls
    chat_outputs = [chatbot, plain_chatbot, msg, last_message]
    panel_inputs = [last_message, setup_state, steered_view, view, max_density, mode, compare] + controls
    panel_outputs = [top_table, top_bars, token_view, panel_note, picked, per_token, token_table]
    answer = cancellable(respond)  # an async generator: Stop cancels it at once, the answer ends at its next token
    sent = send.click(answer, chat_inputs, chat_outputs, api_visibility="private")
    sent.then(inspect_panel, panel_inputs, panel_outputs, api_visibility="private")
    submitted = msg.submit(answer, chat_inputs, chat_outputs, api_visibility="private")
    submitted.then(inspect_panel, panel_inputs, panel_outputs, api_visibility="private")
    stop.click(None, None, None, cancels=[sent, submitted], api_visibility="private")
    clear.click(lambda: ([], gr.update(value=[]), "", ""), None, [chatbot, plain_chatbot, msg, last_message], cancels=[sent, submitted], api_visibility="private")
    compare.change(lambda on: gr.update(visible=on), compare, plain_chatbot, api_visibility="private")
    for control in (steered_view, view, max_density):
        control.change(inspect_panel, panel_inputs, panel_outputs, api_visibility="private")
    token_view.select(token_features, per_token, token_table, api_visibility="private")

    top_table.select(pick_row, top_table, picked, api_visibility="private").then(show_card, picked, [card_text, card_bars], api_visibility="private")
    steer_with.click(add_custom, [setup_state, picked, mode, compare] + controls, [setup_state] + slot_outputs, api_visibility="private")
    steer_with2.click(add_custom, [setup_state, picked2, mode, compare] + controls, [setup_state] + slot_outputs, api_visibility="private").then(
        None, None, None, js="() => { document.querySelector('button[role=tab]')?.click(); }"
    )
    reset.click(reset_defaults, setup_state, [setup_state] + slot_outputs + control_outputs, api_visibility="private")
    share.click(share_query, [setup_state, mode, compare] + controls, share_box, api_visibility="private").then(
        None, share_box, share_box, api_visibility="private",
        js="(q) => { const url = window.location.origin + window.location.pathname + (q ? '?' + q : ''); "
           "try { navigator.clipboard.writeText(url); } catch (e) {} return url; }",
    )

    concept_go.click(run_concept, [concept, concept_n], concept_table, api_visibility="private")
    concept.submit(run_concept, [concept, concept_n], concept_table, api_visibility="private")
    concept_table.select(pick_row, concept_table, picked2, api_visibility="private").then(show_card, picked2, [card_text2, card_bars2], api_visibility="private")
    diff_go.click(run_differential, [positive, negative, diff_n], diff_table, api_visibility="private")
    diff_table.select(pick_row, diff_table, picked2, api_visibility="private").then(show_card, picked2, [card_text2, card_bars2], api_visibility="private")
    for i, button in enumerate(slot_cards):
        button.click(functools.partial(slot_card, i), [setup_state], [card_text, card_bars], api_visibility="private")
    phrase_go.click(steer_phrase, [setup_state, phrase, mode, compare] + controls, [setup_state] + slot_outputs, api_visibility="private")
    phrase.submit(steer_phrase, [setup_state, phrase, mode, compare] + controls, [setup_state] + slot_outputs, api_visibility="private")
    scan_go.click(run_scan, [scan_prompts, scan_index], [scan_table, scan_rate], api_visibility="private")
    ctx_go.click(show_contexts, ctx_index, ctx_text, api_visibility="private")

    demo.load(on_load, None, [setup_state] + slot_outputs + control_outputs, api_visibility="private")

    gr.api(cancellable(api_chat), api_name="chat")  # job.cancel() ends the answer at its next token
    gr.api(api_inspect, api_name="inspect")
    gr.api(api_differential, api_name="differential")
    gr.api(api_scan, api_name="scan")
    gr.api(api_concept_search, api_name="concept_search")
    gr.api(api_status, api_name="status", queue=False)

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=MAX_QUEUE)
busy_queue(SERVICE.busy_message)  # a full queue says when to come back


def quiet_when_idle(queue_class) -> None:
    """Idle is idle: Gradio's queue looks for new events every 1 ms and for progress every 10 ms even with no
    visitor (5% of a core, nearly all of it this polling: py-spy, strace). Two seconds after its last event it
    looks every 50 and 500 ms instead (0.2-0.6% of a core), so only the first event after a quiet spell
    waits, at most 50 ms, to start. Set on the class (this process serves one queue)."""
    last_busy = [float("-inf")]

    def busy(queue) -> bool:
        now = time.monotonic()
        if len(queue) or any(job is not None for job in queue.active_jobs):
            last_busy[0] = now
        return now - last_busy[0] < 2.0

    queue_class.sleep_when_free = property(lambda q: 0.001 if busy(q) else 0.05, lambda q, value: None)
    queue_class.progress_update_sleep_when_free = property(lambda q: 0.01 if busy(q) else 0.5, lambda q, value: None)


quiet_when_idle(Queue)

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if SPACE_ID else "127.0.0.1"),
        server_port=int(os.environ.get("PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))),
        max_file_size="1mb",
    )
