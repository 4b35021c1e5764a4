"""The README's Python example runs as written, on the embedded default."""

import contextlib
import io
import os
import re
from pathlib import Path

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
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    printed = out.getvalue()
    assert "FeatureActivation(index=" in printed  # the inspect line
    assert len(printed.split("\n")[0]) > 20  # the streamed answer
    assert os.getcwd() == str(ROOT)
