"""Steer a chat model with SAE features, and see which features fire: the Gradio app.

`build_demo(service)` lays out the page (builders in `ui/layout.py`) and wires its events to the handlers in
`ui/events.py` and the named API in `ui/api.py`; nothing is built when this module is imported. `main()`
opens the service from a config and launches: `python app.py` on a laptop CPU, and the Space's `app_file`
on Hugging Face (ZeroGPU: `spaces.GPU` wraps the model work and is a no-op elsewhere).

    python app.py [--config demo.yaml] [--port 7860] [--host 127.0.0.1] [--concurrency 4]
                  [--batch-window-ms 15] [--max-new-tokens 512] [--max-queue 64] [--max-sessions 64]

Each option falls back to an environment variable (how a Space is configured): STEERING_CONFIG,
PORT / GRADIO_SERVER_PORT, GRADIO_SERVER_NAME, STEERING_CONCURRENCY, STEERING_BATCH_WINDOW_MS (0 turns
batching off), STEERING_MAX_NEW_TOKENS (this server's cap on an answer), STEERING_MAX_QUEUE (chats waiting at
most; past it a new chat is told at once when to come back), STEERING_MAX_SESSIONS (page sessions whose copy of the
page Gradio keeps in memory, about 1.3 MiB each; the page holds its whole setup, so a forgotten one loses nothing).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable

import gradio as gr
import spaces

from steering.service.demo import DemoService
from steering.service.limits import Limits
from steering.service.start import open_service
from ui import patch_api_arguments, patch_busy_queue, patch_quiet_queue
from ui.api import Api
from ui.events import Page
from ui.layout import chat_tab, inspector_tab

STAMP = "() => Date.now()"  # the page's own clock, for Send, Stop and Clear (steering/service/answers.py)
SHARE_URL = ("(q) => { const url = window.location.origin + window.location.pathname + (q ? '?' + q : ''); "
             "try { navigator.clipboard.writeText(url); } catch (e) {} return url; }")
TO_CHAT_TAB = "() => { document.querySelector('button[role=tab]')?.click(); }"


def page_event(trigger: Callable, fn: Callable | None, inputs=None, outputs=None, **options):
    """An event of the page: kept out of the named API, which lists only the endpoints in `ui/api.py`."""
    return trigger(fn, inputs, outputs, api_visibility="private", **options)


def intro(service: DemoService) -> str:
    model = service.engine.config.model.removeprefix("embedded:")
    return f"""# Steering with SAE features
Chat with **{model}** while pushing its residual stream along sparse-autoencoder feature directions. Move a
slider, send a message, and compare with the unsteered answer. The inspector shows which features fire on
your message."""


def build_demo(service: DemoService, *, gpu: Callable = spaces.GPU, concurrency: int = 4, max_queue: int = 64,
               space_id: str | None = None) -> gr.Blocks:
    """The page and the named API over `service`; `gpu` wraps the model work (`spaces.GPU`)."""
    with gr.Blocks(title="Steering with SAE features") as demo:
        with gr.Row():
            gr.Markdown(intro(service))
            if space_id:
                gr.DuplicateButton("Duplicate this Space", scale=0)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat = chat_tab(service)
            with gr.Tab("Inspector", id="inspector"):
                tab = inspector_tab()
        api = Api(service, gpu)
        api.register()  # first, so that no page event takes an endpoint's name
        page = Page(service, chat, tab, gpu)
        wire_chat(page)
        wire_setup(page)
        wire_inspector_tab(page)
        page_event(demo.load, page.load, None, page.controls.outputs)
    patch_api_arguments.apply(demo, api.is_endpoint)
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    patch_quiet_queue.apply(demo)
    patch_busy_queue.apply(demo, service.busy_message)  # a full queue says when to come back
    return demo


def wire_chat(page: Page) -> None:
    """Send (button or Enter) streams an answer, then the inspector reads the message; Stop and Clear end this
    page's answer through `Answers`, outside the queue, so they are served whatever else is running."""
    c = page.chat
    answer_inputs = {c.message, c.chatbot, c.sent_at, *page.controls.inputs}
    panel_inputs = {c.last_message, c.steered_view, c.view, c.max_density, *page.controls.inputs}
    panel_outputs = {c.table, c.bars, c.tokens, c.note, c.picked, c.per_token, c.token_table}
    chat_outputs = {c.chatbot, c.plain, c.message, c.last_message}
    stamped = page_event(functools.partial(gr.on, [c.send.click, c.message.submit]), None, None, c.sent_at, js=STAMP)
    answered = stamped.then(page.answer, answer_inputs, chat_outputs, api_visibility="private", trigger_mode="multiple")
    answered.then(page.inspect_panel, panel_inputs, panel_outputs, api_visibility="private", trigger_mode="always_last")
    page_event(c.stop.click, None, None, c.stop_at, js=STAMP).then(
        page.stop, {c.stop_at}, None, api_visibility="private", queue=False)
    page_event(c.clear.click, None, None, c.stop_at, js=STAMP).then(
        page.clear, {c.stop_at}, chat_outputs, api_visibility="private", queue=False)
    page_event(page.controls.compare.change, lambda on: gr.update(visible=on), page.controls.compare, c.plain)
    for control in (c.steered_view, c.view, c.max_density):
        page_event(control.change, page.inspect_panel, panel_inputs, panel_outputs, trigger_mode="always_last")
    page_event(c.tokens.select, page.token_features, c.per_token, c.token_table)


def wire_setup(page: Page) -> None:
    """Adding a feature, a phrase, reset, share links and feature cards."""
    c, t = page.chat, page.tab
    controls, setup_inputs, setup_outputs = page.controls, page.controls.inputs, page.controls.outputs
    page_event(c.table.select, page.pick_row, c.table, c.picked).then(
        functools.partial(page.show_card, c.card), c.picked, [c.card.text, c.card.bars], api_visibility="private")
    page_event(c.steer_with.click, functools.partial(page.add_feature, picked=c.picked), {*setup_inputs, c.picked}, setup_outputs)
    page_event(t.steer_with.click, functools.partial(page.add_feature, picked=t.picked), {*setup_inputs, t.picked},
               setup_outputs).then(None, None, None, js=TO_CHAT_TAB, api_visibility="private")
    for trigger in (c.phrase_go.click, c.phrase.submit):
        page_event(trigger, page.steer_phrase, {*setup_inputs, c.phrase}, setup_outputs)
    page_event(c.concept_go.click, page.add_concept, {*setup_inputs, c.phrase}, setup_outputs)
    page_event(c.reset.click, page.reset, {controls.added}, setup_outputs)
    page_event(c.share.click, page.share, setup_inputs, c.share_box).then(
        None, c.share_box, c.share_box, js=SHARE_URL, api_visibility="private")
    for card, picked in ((c.card, c.picked), (t.card, t.picked)):
        page_event(card.calibrate.click, functools.partial(page.calibrate_card, card), picked, [card.text, card.bars])
    for i, slot in enumerate(controls.slots):
        page_event(slot.card.click, functools.partial(page.slot_card, i), {controls.added}, [c.card.text, c.card.bars])


def wire_inspector_tab(page: Page) -> None:
    t = page.tab
    for trigger in (t.concept_go.click, t.concept.submit):
        page_event(trigger, page.run_concept, [t.concept, t.concept_n], t.concept_table)
    for table in (t.concept_table, t.diff_table):
        page_event(table.select, page.pick_row, table, t.picked).then(
            functools.partial(page.show_card, t.card), t.picked, [t.card.text, t.card.bars], api_visibility="private")
    page_event(t.diff_go.click, page.run_differential, [t.positive, t.negative, t.diff_n], t.diff_table)
    page_event(t.scan_go.click, page.run_scan, [t.scan_prompts, t.scan_index], [t.scan_table, t.scan_rate])
    page_event(t.ctx_go.click, page.show_contexts, t.ctx_index, t.ctx_text)


def load_matplotlib() -> None:
    """Gradio runs every event inside a matplotlib backend switch (gradio.utils.MatplotlibBackendMananger), which
    imports matplotlib, when installed, and resolves its default backend on the first event: 0.4 s of the first
    visitor's first answer (benchmarks/app_latency.py). The app draws no figures: name the backend, import it now."""
    os.environ.setdefault("MPLBACKEND", "agg")
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # not a requirement of the app
        pass


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Serve the steering app.")
    parser.add_argument("--config", default=env("STEERING_CONFIG", "demo.yaml"))
    parser.add_argument("--port", type=int, default=int(env("PORT", env("GRADIO_SERVER_PORT", "7860"))))
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "0.0.0.0" if env("SPACE_ID") else "127.0.0.1"))
    parser.add_argument("--concurrency", type=int, default=int(env("STEERING_CONCURRENCY", "4")))
    parser.add_argument("--batch-window-ms", type=float, default=float(env("STEERING_BATCH_WINDOW_MS", "15")))
    parser.add_argument("--max-new-tokens", type=int, default=int(env("STEERING_MAX_NEW_TOKENS", "512")))
    parser.add_argument("--max-queue", type=int, default=int(env("STEERING_MAX_QUEUE", "64")))
    parser.add_argument("--max-sessions", type=int, default=int(env("STEERING_MAX_SESSIONS", "64")))
    args = parser.parse_args(argv)
    zerogpu = env("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # each GPU call is its own process there
    service = open_service(args.config, Limits(max_new_tokens=args.max_new_tokens), zerogpu=zerogpu,
                           concurrency=args.concurrency, batch_window_s=args.batch_window_ms / 1000, gpu=spaces.GPU,
                           max_queue=args.max_queue)
    demo = build_demo(service, concurrency=args.concurrency, max_queue=args.max_queue, space_id=env("SPACE_ID"))
    load_matplotlib()
    demo.launch(server_name=args.host, server_port=args.port, max_file_size="1mb", state_session_capacity=args.max_sessions)


if __name__ == "__main__":
    main()
