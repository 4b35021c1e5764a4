"""No deprecation warning from the project's own calls when the app starts and answers, on the hooks and the
nnsight backends: every warning is recorded (none filtered), and one of a deprecation category attributed
to a file of the library, app.py or ui/ fails the test, naming the file and line. The whole test run holds
the same rule through pyproject.toml's filterwarnings (tests/unit/test_warnings_config.py)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from steering.backends.nnsight import NNsightBackend
from steering.config import GenerationSettings
from steering.engine import Engine
from steering.service.start import open_service
from tests.conftest import write_test_demo
from tests.helpers import ROOT

OURS = (ROOT / "steering", ROOT / "app.py", ROOT / "ui")
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
SHORT = GenerationSettings(max_new_tokens=4, temperature=0.0)


def _ours(w: warnings.WarningMessage) -> bool:
    path = Path(w.filename).resolve()
    return any(path == p or p in path.parents for p in OURS)


def test_the_app_starts_and_answers_on_both_backends_without_a_deprecation_from_our_calls(tmp_path, smollm2):
    from app import build_demo

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        service = open_service(write_test_demo(tmp_path))
        try:
            build_demo(service)
            setup = replace(service.defaults(), generation=SHORT)
            assert list(service.chat("Hi!", None, setup))[-1].steered
            assert service.inspect("The ocean is deep.", n=3)
            with Engine(replace(service.engine.config, backend="nnsight"), NNsightBackend(*smollm2, log=lambda m: None),
                        service.engine.vectors) as nn:
                assert nn.chat("Hi!", settings=SHORT)
        finally:
            service.engine.close()
    ours = [f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in seen
            if issubclass(w.category, DEPRECATIONS) and _ours(w)]
    assert not ours, "\n".join(ours)
