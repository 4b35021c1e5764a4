"""Small SAE files the tests write themselves (never shipped as real features)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import torch

from steering.sae import SAE


def random_sae(d: int, n_features: int, activation: str = "jumprelu", seed: int = 0, layer: int | None = None, tied: bool = True) -> SAE:
    """Unit-norm decoder rows; with `tied`, W_enc = W_dec^T so w_i . d_i = 1 (pin sets features exactly)."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(n_features, d, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T.clone() if tied else torch.randn(d, n_features, generator=g) / d**0.5
    return SAE(
        W_enc=W_enc.contiguous(),
        W_dec=W_dec,
        b_enc=torch.randn(n_features, generator=g) * 0.1,
        b_dec=torch.randn(d, generator=g) * 0.05,
        activation=activation,
        threshold=torch.full((n_features,), 0.05) if activation == "jumprelu" else None,
        k=8 if activation == "topk" else None,
        meta={"layer": layer, "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post"},
    )


def write_sae(folder: Path, sae: SAE) -> Path:
    """Save in the project's own format (SAELens-native layout) in fp32 so tests compare exactly."""
    sae.save(folder, dtype=torch.float32)
    return folder


ROOT = Path(__file__).resolve().parents[1]


def layer_config(tmp_path: Path, features, sae_section=None, **extra):
    """A demo config on the embedded model whose SAE folders are `tmp_path/saes/layer_{layer}` (or
    `sae_section`; False: no SAE), written to `tmp_path/demo.yaml` and loaded."""
    import yaml

    from steering.config import load_config

    data = {"model": "embedded:smollm2-135m-instruct", "features": features, **extra}
    if sae_section is not False:
        data["sae"] = sae_section or {"source": "./saes", "format": "saelens", "path": "layer_{layer}"}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module (registered, so its dataclasses resolve)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEST_BACKEND = os.environ.get("STEERING_TEST_BACKEND", "hooks")
"""The backend the app tests run on: hooks, or toy (tests/toy_backend.py: a backend added in one module)."""
LAUNCHERS = {"hooks": ["app.py"], "toy": ["-m", "tests.toy_backend"]}


def on_test_backend(demo: Path) -> Path:
    """`demo` itself, or a copy beside it on `TEST_BACKEND` when that is not hooks (a demo naming another
    backend, such as remote, keeps it)."""
    import yaml

    data = yaml.safe_load(demo.read_text())
    if TEST_BACKEND == "hooks" or data.get("backend", "hooks") != "hooks":
        return demo
    copy = demo.with_name(f"{demo.stem}-{TEST_BACKEND}.yaml")
    copy.write_text(yaml.safe_dump({**data, "backend": TEST_BACKEND}))
    return copy


def start_app(demo: Path, env: dict | None = None, timeout_s: float = 900, argv: list[str] | None = None,
              poll_s: float = 0.5, flags: tuple[str, ...] = (), log_path: Path | None = None) -> tuple[subprocess.Popen, str, Path]:
    """`python app.py` (or `python *argv`) serving `demo` on a free loopback port, on `TEST_BACKEND`, configured
    by its command-line options (`--config`, `--port`, `--host`, then `flags`); returns (process, URL, log path: `log_path`, else app.log beside `demo`)
    once it answers, checking every `poll_s` (`timeout_s`: a bound for a loaded machine; the app answers as soon
    as it has started)."""
    port = free_port()
    launched = on_test_backend(demo)
    if launched != demo:
        demo, argv = launched, argv or LAUNCHERS[TEST_BACKEND]
    log_path = log_path or demo.parent / "app.log"
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, *(argv or ["app.py"]), "--config", str(demo), "--port", str(port), "--host", "127.0.0.1", *flags]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url, log_path
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"the app did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(poll_s)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


TINY_SYSTEM = "You are a helpful AI assistant named Tiny"
CHATML = (  # the shape of SmolLM2's template: a default system turn when the chat has none
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + TINY_SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NO_SYSTEM_CHATML = (  # a template that refuses a system turn, as Gemma's does
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_WORDS = (
    "system user assistant You are a helpful AI named Tiny What is the capital of France Paris Hi hello "
    "tell me about sea ocean waves dog cat bread The weather was mild so we walked to market Be brief "
    "Answer in French Sure it yes no , . ? ! :"
).split()


def raw_api_call(app_server: str, api: str, body: str) -> tuple[str, object]:
    """POST a hand-written JSON body to a named endpoint, as curl would (gradio_client refuses NaN, lone
    surrogates and too few values before sending); returns the stream's last event and its data (None for
    an empty or null one)."""
    import json

    request = urllib.request.Request(app_server + f"gradio_api/call/{api}", data=body.encode("ascii"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{app_server}gradio_api/call/{api}/{event_id}", timeout=300) as r:
        lines = r.read().decode("utf-8", "replace").splitlines()
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return events[-1], json.loads(data[-1]) if data[-1] not in ("null", "") else None


def tiny_tokenizer(chat_template: str | None = CHATML):
    """A word-level tokenizer built in memory (nothing downloaded): ChatML control tokens, a BOS its
    post-processor adds, and TINY_WORDS; every id is below 100, so the tiny Llama fixture reads them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + TINY_WORDS))}
    assert len(vocab) < 100
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                  unk_token="<unk>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = chat_template
    return tok


TRAIN_LAYER = 15
TRAIN_TEXTS = [  # a few sentences on different topics: a tiny real-activation budget for SAE training tests
    "The ocean covers most of the planet, and its waves shape every coast they reach.",
    "To install the package, run pip install and restart the terminal before importing it.",
    "She baked bread every morning, and the smell of warm loaves filled the small kitchen.",
    "The committee approved the budget after a long debate about roads and schools.",
    "Dogs are loyal companions; a puppy needs patience, walks and a little training each day.",
    "Stars form in clouds of gas and dust, and some end their lives as black holes.",
]


CHROMIUM = os.environ.get("STEERING_CHROMIUM", "/usr/bin/chromium")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@contextmanager
def browser_page(width: int = 1400, height: int = 1200):
    """A page of Debian's Chromium driven by Playwright (it cannot download browsers here)."""
    import shutil

    import pytest
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (.ci/run does) or set STEERING_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
