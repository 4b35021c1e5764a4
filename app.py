"""Steer a chat model with SAE features, and see which features fire: the Gradio app.

Layout and event wiring only; the work is in `steering.service`. Runs as a Hugging Face Space
on ZeroGPU (`spaces.GPU` is a no-op elsewhere) and as `python app.py` on a laptop CPU.
Environment: STEERING_CONFIG (default demo.yaml), STEERING_CONCURRENCY (default 4),
STEERING_BATCH_WINDOW_MS (default 15; 0 turns batching off), STEERING_MAX_NEW_TOKENS (server cap,
default 512), PORT / GRADIO_SERVER_PORT.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from dataclasses import replace
from typing import Iterator

import gradio as gr
import pandas as pd
import spaces
import torch

from steering.config import MODES, GenerationSettings
from steering.feature_info import load_feature_info
from steering.hooks import active_requests
from steering.limits import Limits, UserError
from steering.service import OUT_OF_MEMORY, DemoService, Slider
from steering.session import Steerer
from steering.share import SteeringSetup, from_query, parse_key, to_query

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

STEERER = Steerer.from_config(CONFIG)  # loaded once, at import (ZeroGPU moves it to the GPU per call)
CONCURRENCY = int(os.environ.get("STEERING_CONCURRENCY", "4"))
ON_ZEROGPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # each call is its own process there
if not ON_ZEROGPU:
    STEERER.enable_batching(float(os.environ.get("STEERING_BATCH_WINDOW_MS", "15")) / 1000, max_batch=max(CONCURRENCY, 1))
SERVICE = DemoService(STEERER, LIMITS, load_feature_info(STEERER.config))
DEFAULTS = SERVICE.defaults()


# ---- errors: a readable message, never a traceback, and the page keeps its state ---------------

def _shown(exc: BaseException) -> gr.Error:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        log.warning("out of memory: %s", type(exc).__name__)
        return gr.Error(OUT_OF_MEMORY, print_exception=False)
    if isinstance(exc, (UserError, ValueError, KeyError)):
        return gr.Error(str(exc).strip("'\""), print_exception=False)  # it quotes the visitor's input: not for the log
    log.exception("unexpected error")
    return gr.Error(f"Something went wrong on the server ({type(exc).__name__}). Your conversation is kept; try again.", print_exception=False)  # logged just above


def readable_errors(fn):
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _shown(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _shown(exc) from None
    return wrapper


# ---- controls <-> setup ----------------------------------------------------------------------

def setup_from_controls(setup: SteeringSetup, mode: str, compare: bool, gen: list, values: list, enabled: list) -> SteeringSetup:
    """The visitor's setup as the page shows it: slot i holds the i-th feature of `features_for`."""
    features = SERVICE.features_for(setup)
    strengths = {f.key: (float(v) if on else None) for f, v, on in zip(features, values, enabled)}
    max_new_tokens, temperature, top_p, repetition_penalty, seed = gen
    try:
        generation = GenerationSettings(
            max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_p=float(top_p),
            repetition_penalty=float(repetition_penalty), seed=None if seed in (None, "") or int(seed) < 0 else int(seed),
        )
    except (TypeError, ValueError) as exc:
        raise UserError(f"Generation settings: {str(exc).splitlines()[-1]}") from None
    return replace(setup, strengths=strengths, mode=None if mode == "own" else mode, compare=bool(compare), generation=generation)


def current_setup(setup: SteeringSetup, mode: str, compare: bool, controls: tuple) -> SteeringSetup:
    """`setup_from_controls` for an event whose inputs end with the generation settings, the sliders and the on boxes."""
    return setup_from_controls(setup, mode, compare, list(controls[:5]), list(controls[5:5 + MAX_SLOTS]), list(controls[5 + MAX_SLOTS:]))


def slot_updates(setup: SteeringSetup) -> list:
    """Visibility, label, range and value of every slot, then its on/off box."""
    sliders = SERVICE.sliders(setup)
    rows, bars, boxes = [], [], []
    for i in range(MAX_SLOTS):
        if i < len(sliders):
            s: Slider = sliders[i]
            info = f"layer {s.layer}, feature {s.index} · typical norm of layer {s.layer}: {s.norm:.0f}"
            rows.append(gr.update(visible=True))
            bars.append(gr.update(label=s.label, info=info, minimum=s.minimum, maximum=s.maximum, value=s.value))
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
def inspect_panel(message, setup, steered_view, mode, compare, *controls):
    """The side panel after each message: top features, a bar chart, and the top feature on every token."""
    empty = pd.DataFrame({"feature": [], "activation": []})
    if not message:
        return gr.update(), empty, [], "Send a message to see which features fire on it.", gr.update()
    try:
        current = current_setup(setup, mode, compare, controls)
        rows = SERVICE.inspect(message, current, steered=bool(steered_view), n=10)
        if not rows:
            return [], empty, [], "No feature fired on the last token.", gr.update()
        top = rows[0]
        tokens = SERVICE.token_activations(message, top["index"])
        special = {STEERER.tokenizer.decode([i]) for i in STEERER.special_ids}
        shown = [(t, 0.0 if i == 0 or t in special else v) for i, (t, v) in enumerate(tokens)]  # position 0 and chat-control tokens are outliers
        peak = max((abs(v) for _, v in shown), default=0.0) or 1.0
        highlighted = [(t, round(v / peak, 3) if v else None) for t, v in shown]
        table = [[r["index"], r["label"], r["activation"]] for r in rows]
        bars = pd.DataFrame({"feature": [str(r["index"]) for r in rows], "activation": [r["activation"] for r in rows]})
        note = (f"Layer {STEERER.inspector_layer}, last prompt token, {'under your steering' if steered_view else 'unsteered'}. "
                f"Highlighted: feature {top['index']} ({top['label']}) on each token of the prompt (special tokens and the first position left out).")
        return table, bars, highlighted, note, gr.update(value=top["index"])
    except Exception as exc:  # the panel must never break the chat
        if not isinstance(exc, UserError):
            log.exception("inspector panel failed")
        return [], empty, [], f"Inspector: {exc}", gr.update()


@readable_errors
def add_custom(setup: SteeringSetup, index):
    if index is None:
        raise UserError("Pick a feature first: click a row of a features table, or type its index.")
    layer = STEERER.inspector_layer
    index = SERVICE._index(int(index)) if float(index).is_integer() else SERVICE._index(index)
    key = (layer, index)
    if key in setup.custom or any((f.layer, f.index) == key for f in STEERER.features):
        gr.Info(f"Feature {index} already has a slider.")
        return [setup] + slot_updates(setup)
    if len(SERVICE.features_for(setup)) >= MAX_SLOTS:
        raise UserError(f"All {MAX_SLOTS} slider slots are in use.")
    setup = replace(setup, custom=setup.custom + (key,))
    SERVICE.validated(setup)
    STEERER.vector(layer, index)
    gr.Info(f"Added a slider for feature {index} ({SERVICE.label(layer, index)}). Set its strength, then send a message.")
    return [setup] + slot_updates(setup)


def reset_defaults(setup: SteeringSetup):
    fresh = replace(DEFAULTS, custom=setup.custom)
    return [fresh] + slot_updates(fresh) + control_values(fresh)


def share_query(setup, mode, compare, *controls) -> str:
    try:
        return to_query(current_setup(setup, mode, compare, controls), DEFAULTS)
    except UserError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def on_load(request: gr.Request):
    """Apply a share link's query parameters; bad ones are named in a warning."""
    params = dict(request.query_params) if request is not None else {}
    setup, warnings = from_query(params, DEFAULTS, STEERER.n_layers, SERVICE.d_sae if "add" in params else None)
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
    rows = SERVICE.differential(pos, neg, int(n or 20))
    return [[r["index"], r["label"], r["score"], r["mean_pos"], r["mean_neg"], r["fire_pos"], r["fire_neg"]] for r in rows]


@spaces.GPU(duration=60)
@readable_errors
def run_scan(prompts, index):
    if index is None:
        raise UserError("Type a feature index to scan for.")
    rows, rate = SERVICE.scan(prompts, int(index))
    return [[r["prompt"], r["activation"]] for r in rows], f"Feature {int(index)} fired on {rate:.0%} of {len(rows)} prompts."


@spaces.GPU(duration=60)
@readable_errors
def run_concept(concept, n):
    rows = SERVICE.concept_search(concept, int(n or 10))
    return [[r["index"], r["label"], r["score"], r["fire_pos"], r["fire_neg"]] for r in rows]


@readable_errors
def show_contexts(index):
    if index is None:
        raise UserError("Type a feature index.")
    found = SERVICE.contexts(int(index))
    if not found:
        return "This SAE ships no top-activating contexts for this feature."
    return "\n".join(f"{i + 1}. {c}" for i, c in enumerate(found))


# ---- named API endpoints (gradio_client) -------------------------------------------------------

def _api_setup(strengths, mode, add_features, max_new_tokens, temperature, top_p, repetition_penalty, seed) -> SteeringSetup:
    try:
        custom = tuple(parse_key(k) for k in (add_features or []))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if mode not in (*MODES, "own"):
        raise UserError(f"mode must be one of {', '.join(MODES)}, own; got {mode!r}")
    g = DEFAULTS.generation
    try:
        generation = GenerationSettings(
            max_new_tokens=g.max_new_tokens if max_new_tokens is None else max_new_tokens,
            temperature=g.temperature if temperature is None else temperature,
            top_p=g.top_p if top_p is None else top_p,
            repetition_penalty=g.repetition_penalty if repetition_penalty is None else repetition_penalty,
            seed=g.seed if seed is None else (None if seed < 0 else seed),
        )
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    merged = dict(DEFAULTS.strengths) | dict(strengths or {})
    return replace(DEFAULTS, strengths=merged, mode=None if mode == "own" else mode, custom=custom, generation=generation)


def api_chat_duration(message, history=None, strengths=None, mode="own", add_features=None, max_new_tokens=None, *rest, **kwargs) -> int:
    return chat_duration(message, history, None, mode, False, max_new_tokens if max_new_tokens is not None else LIMITS.max_new_tokens)


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
    setup = _api_setup(strengths, mode, add_features, max_new_tokens, temperature, top_p, repetition_penalty, seed)
    for update in SERVICE.chat(message, history, setup):
        yield update.steered


@spaces.GPU(duration=60)
@readable_errors
def api_inspect(prompt: str, top_n: int = 10) -> list:
    """Top SAE features at the prompt's last token (unsteered): [{index, label, activation}]."""
    return SERVICE.inspect(prompt, n=top_n)


@spaces.GPU(duration=60)
@readable_errors
def api_differential(positive: str, negative: str, top_n: int = 20) -> list:
    """Features separating two prompt sets (one prompt per line)."""
    return SERVICE.differential(positive, negative, top_n)


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
    return SERVICE.concept_search(concept, top_n)


def api_status() -> dict:
    """Generations in flight and the model served (counts only, nothing about visitors)."""
    return {"active_generations": active_requests(), "model": STEERER.config.model}


# ---- layout ----------------------------------------------------------------------------------

INTRO = f"""# Steering with SAE features
Chat with **{STEERER.config.model.removeprefix('embedded:')}** while pushing its residual stream along sparse-autoencoder
feature directions. Move a slider, send a message, and compare with the unsteered answer. The inspector shows which
features fire on your message."""

SPACE_ID = os.environ.get("SPACE_ID")

with gr.Blocks(title="Steering with SAE features") as demo:
    setup_state = gr.State(DEFAULTS)
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
                    msg = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, lines=2, max_lines=8, elem_id="message")
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
                    if STEERER.notice:
                        gr.Markdown(f"_{STEERER.notice}_")
                    if STEERER.backend == "nnsight":
                        gr.Markdown("_Steering runs through the NNsight backend (`backend: nnsight` in the config): the same edits as the hooks backend, written as nnsight interventions; the position options are not available with it._")
                    if not STEERER.features:
                        gr.Markdown("_No features configured in demo.yaml yet: add one from the inspector (\"Steer with this feature\")._")
                    slot_rows, slot_sliders, slot_checks = [], [], []
                    for i in range(MAX_SLOTS):
                        with gr.Row(visible=False) as row:
                            slot_sliders.append(gr.Slider(-100, 100, value=0, step=0.5, label=f"slot {i}", scale=5, elem_id=f"strength-{i}"))
                            slot_checks.append(gr.Checkbox(value=True, label="on", scale=1, min_width=60, elem_id=f"on-{i}"))
                        slot_rows.append(row)
                    with gr.Row():
                        reset = gr.Button("Reset to defaults", elem_id="reset")
                        share = gr.Button("Copy share link", elem_id="share")
                    share_box = gr.Textbox(label="Share link", interactive=False, elem_id="share-link")
                    gr.Markdown("### Inspector")
                    steered_view = gr.Checkbox(label="Inspect under the current steering", value=False)
                    panel_note = gr.Markdown("Send a message to see which features fire on it.", elem_id="panel-note")
                    top_table = gr.Dataframe(headers=["feature", "label", "activation"], interactive=False, elem_id="top-features")
                    top_bars = gr.BarPlot(x="feature", y="activation", sort="-y", height=220, show_label=False, x_title="feature index")
                    token_view = gr.HighlightedText(label="Top feature on each token", combine_adjacent=False, elem_id="token-view")
                    with gr.Row():
                        picked = gr.Number(label="Feature index", precision=0, elem_id="picked-feature")
                        steer_with = gr.Button("Steer with this feature", elem_id="steer-with")
        with gr.Tab("Inspector", id="inspector"):
            gr.Markdown("Read-only: nothing here generates or steers. One prompt per line.")
            with gr.Accordion("Concept search", open=True):
                with gr.Row():
                    concept = gr.Textbox(label="Concept", placeholder="the ocean", elem_id="concept")
                    concept_n = gr.Number(value=10, precision=0, label="Top N")
                    concept_go = gr.Button("Search", variant="primary")
                concept_table = gr.Dataframe(headers=["feature", "label", "score", "fire (concept)", "fire (neutral)"], interactive=False)
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
                picked2 = gr.Number(label="Feature index", precision=0)
                steer_with2 = gr.Button("Steer with this feature")

    gen_controls = [max_tokens, temperature, top_p, rep, seed]
    controls = gen_controls + slot_sliders + slot_checks
    slot_outputs = slot_rows + slot_sliders + slot_checks
    control_outputs = [mode, compare] + gen_controls

    chat_inputs = [msg, chatbot, setup_state, mode, compare] + controls
    chat_outputs = [chatbot, plain_chatbot, msg, last_message]
    panel_inputs = [last_message, setup_state, steered_view, mode, compare] + controls
    panel_outputs = [top_table, top_bars, token_view, panel_note, picked]
    sent = send.click(respond, chat_inputs, chat_outputs, api_visibility="private")
    sent.then(inspect_panel, panel_inputs, panel_outputs, api_visibility="private")
    submitted = msg.submit(respond, chat_inputs, chat_outputs, api_visibility="private")
    submitted.then(inspect_panel, panel_inputs, panel_outputs, api_visibility="private")
    stop.click(None, None, None, cancels=[sent, submitted], api_visibility="private")
    clear.click(lambda: ([], gr.update(value=[]), "", ""), None, [chatbot, plain_chatbot, msg, last_message], cancels=[sent, submitted], api_visibility="private")
    compare.change(lambda on: gr.update(visible=on), compare, plain_chatbot, api_visibility="private")
    steered_view.change(inspect_panel, panel_inputs, panel_outputs, api_visibility="private")

    top_table.select(pick_row, top_table, picked, api_visibility="private")
    steer_with.click(add_custom, [setup_state, picked], [setup_state] + slot_outputs, api_visibility="private")
    steer_with2.click(add_custom, [setup_state, picked2], [setup_state] + slot_outputs, api_visibility="private").then(
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
    concept_table.select(pick_row, concept_table, picked2, api_visibility="private")
    diff_go.click(run_differential, [positive, negative, diff_n], diff_table, api_visibility="private")
    diff_table.select(pick_row, diff_table, picked2, api_visibility="private")
    scan_go.click(run_scan, [scan_prompts, scan_index], [scan_table, scan_rate], api_visibility="private")
    ctx_go.click(show_contexts, ctx_index, ctx_text, api_visibility="private")

    demo.load(on_load, None, [setup_state] + slot_outputs + control_outputs, api_visibility="private")

    gr.api(api_chat, api_name="chat")
    gr.api(api_inspect, api_name="inspect")
    gr.api(api_differential, api_name="differential")
    gr.api(api_scan, api_name="scan")
    gr.api(api_concept_search, api_name="concept_search")
    gr.api(api_status, api_name="status", queue=False)

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if SPACE_ID else "127.0.0.1"),
        server_port=int(os.environ.get("PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))),
        max_file_size="1mb",
    )
