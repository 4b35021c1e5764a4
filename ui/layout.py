"""The page's layout: the chat tab (chat, steering, inspector) and the read-only inspector tab.

Each builder makes its components inside the current Blocks and returns them by name; `app.build_demo`
wires them to the handlers in `ui.events`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from steering.service.demo import DemoService
from steering.service.inspector import DEFAULT_MAX_DENSITY
from ui.controls import SetupControls, Slot, generation_controls, slots


@dataclass
class Card:
    text: gr.Markdown
    bars: gr.BarPlot
    calibrate: gr.Button


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    plain: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    stop: gr.Button
    clear: gr.Button
    sent_at: gr.Number  # the page's clock at each Send, Stop and Clear (set in the browser)
    stop_at: gr.Number
    last_message: gr.Textbox
    controls: SetupControls
    reset: gr.Button
    share: gr.Button
    share_box: gr.Textbox
    phrase: gr.Textbox
    phrase_go: gr.Button
    concept_go: gr.Button
    view: gr.Radio
    max_density: gr.Number
    steered_view: gr.Checkbox
    note: gr.Markdown
    table: gr.Dataframe
    bars: gr.BarPlot
    tokens: gr.HighlightedText
    per_token: gr.JSON  # each token's strongest features, shown when a token is clicked
    token_table: gr.Dataframe
    picked: gr.Number
    steer_with: gr.Button
    card: Card

    @property
    def slots(self) -> list[Slot]:
        return self.controls.slots


@dataclass
class InspectorTab:
    concept: gr.Textbox
    concept_n: gr.Number
    concept_go: gr.Button
    concept_table: gr.Dataframe
    positive: gr.Textbox
    negative: gr.Textbox
    diff_n: gr.Number
    diff_go: gr.Button
    diff_table: gr.Dataframe
    scan_prompts: gr.Textbox
    scan_index: gr.Number
    scan_go: gr.Button
    scan_rate: gr.Markdown
    scan_table: gr.Dataframe
    ctx_index: gr.Number
    ctx_go: gr.Button
    ctx_text: gr.Markdown
    picked: gr.Number
    steer_with: gr.Button
    card: Card


def feature_card(where: str) -> Card:
    """Markdown and an activation histogram, hidden until a feature is picked."""
    with gr.Accordion("Feature card", open=True):
        text = gr.Markdown("Click a row of a features table, or a slider's \"card\" button, to see what the feature means.",
                           elem_id=f"feature-card-{where}")
        bars = gr.BarPlot(x="activation", y="tokens", height=180, x_title="activation", y_title="held-out tokens",
                          visible=False, sort=None, elem_id=f"feature-histogram-{where}")
        calibrate = gr.Button("Calibrate the picked feature (a short sweep: its recommended mode and strength)",
                              size="sm", elem_id=f"calibrate-{where}")
    return Card(text, bars, calibrate)


def notes(service: DemoService) -> None:
    """What the visitor should know about this engine, under the steering controls."""
    engine = service.engine
    if engine.notice:
        gr.Markdown(f"_{engine.notice}_")
    if engine.backend.name == "nnsight":
        gr.Markdown("_Steering runs through the NNsight backend (`backend: nnsight` in the config): the same edits as "
                    "the hooks backend, written as nnsight interventions; the position options are not available with it._")
    if not engine.features:
        gr.Markdown("_No features configured in demo.yaml yet: add one from the inspector (\"Steer with this feature\")._")


def chat_tab(service: DemoService) -> ChatTab:
    defaults = service.defaults()
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                chatbot = gr.Chatbot(label="Steered", height=460, elem_id="steered-chat")
                plain = gr.Chatbot(label="Unsteered (same prompt and seed)", height=460, visible=False, elem_id="plain-chat")
            message = gr.Textbox(placeholder="Type a message and press Enter (Shift+Enter: a new line)", show_label=False,
                                 lines=1, max_lines=8, elem_id="message")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="send")
                stop = gr.Button("Stop", variant="stop", elem_id="stop")
                clear = gr.Button("Clear", elem_id="clear")
            with gr.Accordion("Generation settings", open=False):
                generation = generation_controls(defaults, service.limits.max_new_tokens)
            sent_at, stop_at = gr.Number(0, visible=False), gr.Number(0, visible=False)
            last_message = gr.Textbox("", visible=False)
        with gr.Column(scale=2):
            gr.Markdown("### Steering")
            compare = gr.Checkbox(label="Compare with the unsteered answer", value=False, elem_id="compare")
            notes(service)
            controls = SetupControls(gr.JSON([], visible=False), compare, generation, slots(), gr.JSON([], visible=False))
            with gr.Row():
                reset = gr.Button("Reset to defaults", elem_id="reset")
                share = gr.Button("Copy share link", elem_id="share")
            share_box = gr.Textbox(label="Share link", interactive=False, elem_id="share-link")
            with gr.Row():
                phrase = gr.Textbox(label="Steer toward a phrase", placeholder="the ocean", scale=3, elem_id="phrase")
                phrase_go = gr.Button("Find a feature", scale=1, elem_id="phrase-go")
                concept_go = gr.Button("Concept vector", scale=1, elem_id="concept-vector-go")
            gr.Markdown("### Inspector")
            with gr.Row():
                view = gr.Radio([("Whole message", "message"), ("Last token", "last")], value="message", label="View", elem_id="view")
                max_density = gr.Number(value=100 * DEFAULT_MAX_DENSITY, minimum=0, maximum=100,
                                        label="Hide features firing on more than (% of tokens)", elem_id="max-density")
            steered_view = gr.Checkbox(label="Inspect under the current steering", value=False)
            note = gr.Markdown("Send a message to see which features fire on it.", elem_id="panel-note")
            table = gr.Dataframe(headers=["feature", "label", "activation", "token"], interactive=False, elem_id="top-features")
            bars = gr.BarPlot(x="feature", y="activation", sort="-y", height=220, show_label=False, x_title="feature index")
            tokens = gr.HighlightedText(label="Top feature on each token (click a token for its own)", combine_adjacent=False,
                                        elem_id="token-view")
            per_token = gr.JSON([], visible=False)
            token_table = gr.Dataframe(headers=["feature", "label", "activation"], interactive=False, visible=False,
                                       elem_id="token-features")
            with gr.Row():
                picked = gr.Number(label="Feature index", precision=0, elem_id="picked-feature")
                steer_with = gr.Button("Steer with this feature", elem_id="steer-with")
            card = feature_card("chat")
    return ChatTab(chatbot, plain, message, send, stop, clear, sent_at, stop_at, last_message, controls, reset, share,
                   share_box, phrase, phrase_go, concept_go, view, max_density, steered_view, note, table, bars, tokens, per_token,
                   token_table, picked, steer_with, card)


def inspector_tab() -> InspectorTab:
    gr.Markdown("Read-only: nothing here generates or steers. One prompt per line.")
    with gr.Accordion("Concept search", open=True):
        with gr.Row():
            concept = gr.Textbox(label="Concept", placeholder="the ocean", elem_id="concept")
            concept_n = gr.Number(value=10, precision=0, label="Top N")
            concept_go = gr.Button("Search", variant="primary")
        concept_table = gr.Dataframe(headers=["feature", "label", "score", "output score", "fire (concept)", "fire (neutral)"],
                                     interactive=False, elem_id="concept-table")
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
        picked = gr.Number(label="Feature index", precision=0, elem_id="picked-feature-2")
        steer_with = gr.Button("Steer with this feature")
    card = feature_card("inspector")
    return InspectorTab(concept, concept_n, concept_go, concept_table, positive, negative, diff_n, diff_go, diff_table,
                        scan_prompts, scan_index, scan_go, scan_rate, scan_table, ctx_index, ctx_go, ctx_text, picked,
                        steer_with, card)
