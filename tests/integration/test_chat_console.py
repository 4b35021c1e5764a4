"""The console chat: commands change state as documented, answers stream, and the CLI runs end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steering.cli.console import ChatConsole
from steering.config import MODES, load_config
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.steer.vectors import vectors_for_config
from tests.helpers import ROOT, random_sae, write_sae


def _write_demo(tmp: Path) -> Path:
    write_sae(tmp / "sae" / "layer_15", random_sae(576, 64, "jumprelu", seed=5, layer=15))
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump({
        "model": "embedded:smollm2-135m-instruct",
        "sae": {"source": "./sae", "format": "saelens", "path": "layer_{layer}"},
        "features": [{"layer": 15, "index": 3, "strength": 0.0, "label": "test direction"}],
        "generation": {"max_new_tokens": 12, "temperature": 0.0, "repetition_penalty": 1.0},
    }))
    return path


@pytest.fixture(scope="module")
def console(smollm2, tmp_path_factory):
    import io

    config = load_config(_write_demo(tmp_path_factory.mktemp("chat")))
    steerer = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    return ChatConsole(steerer, out=io.StringIO())


def _said(console):
    text = console.out.getvalue()
    console.out.seek(0)
    console.out.truncate()
    return text


def test_commands_change_state(console):
    console.handle_command("/set 0 40")
    assert console.strengths[FeatureKey(15, 3)] == 40.0 and "test direction: strength 40" in _said(console)
    console.handle_command("/set test direction 5")  # labels with spaces are not supported: clear error
    assert "usage: /set FEATURE STRENGTH" in _said(console)
    console.handle_command("/set L15:3 nan")
    assert "finite number" in _said(console)
    console.handle_command("/mode clamp")
    assert console.mode == "clamp"
    console.handle_command("/features")
    assert "strength 40 (clamp)" in _said(console)
    console.handle_command("/off 0")
    assert console.strengths[FeatureKey(15, 3)] is None
    console.handle_command("/features")
    assert "L15:3        off" in _said(console)
    console.handle_command("/mode sideways")
    assert f"usage: /mode {'|'.join(MODES)}|own" in _said(console)
    console.handle_command("/defaults")
    assert console.strengths[FeatureKey(15, 3)] == 0.0
    console.handle_command("/frobnicate")
    assert "unknown command /frobnicate" in _said(console)
    console.handle_command("/tokens 8")
    assert console.settings.max_new_tokens == 8
    console.handle_command("/tokens 0")
    assert "max_new_tokens" in _said(console) and console.settings.max_new_tokens == 8
    assert console.handle_command("/quit") is False
    console.mode = None


def test_reply_streams_keeps_history_and_reset_clears_it(console):
    pieces = []
    answer = console.reply("What is the capital of France?", write=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == answer and "Paris" in answer
    assert [m["role"] for m in console.history] == ["user", "assistant"]
    console.handle_command("/inspect")
    assert "rank" in _said(console)
    console.handle_command("/reset")
    assert console.history == []


def test_cli_runs_a_conversation_end_to_end(tmp_path):
    demo = _write_demo(tmp_path)
    script = "/features\n/set 0 30\nWhat is the capital of France?\n/quit\n"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "steering.cli.console", str(demo)], input=script, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "test direction" in run.stdout and "strength 30" in run.stdout and "bot> " in run.stdout
    assert "\033[" not in run.stdout


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path):
    bad = tmp_path / "demo.yaml"
    bad.write_text("model: embedded:smollm2-135m-instruct\nfeatures: [[15, -1, 1.0]]\n")
    run = subprocess.run([sys.executable, "-m", "steering.cli.console", str(bad)], capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 2
    assert "cannot start" in run.stderr and "features[0]" in run.stderr and "Traceback" not in run.stderr
