"""The README's Python example runs as written, on the embedded default."""

import contextlib
import io
import re
from pathlib import Path

from steering.model.layers import decoder_layers

ROOT = Path(__file__).resolve().parents[2]


def _python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs_as_documented(monkeypatch):
    code = _python_example()
    assert "from steering import Engine" in code
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    namespace = {"__name__": "readme_example"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    printed = out.getvalue().split("\n")
    assert len(printed[0]) > 20  # the streamed answer
    assert "FeatureActivation(index=" in printed[-2]  # the inspect line, after the chat's answer
    model = namespace["engine"].model
    assert "_steering_hooks" not in vars(model), "leaving the with block detaches the engine's hooks"
    assert not any(layer._forward_hooks for layer in decoder_layers(model)), "a hook was left on a decoder layer"
