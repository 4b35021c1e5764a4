"""pyproject.toml's filterwarnings: a deprecation reached from the project's own code fails the test run; one
raised inside another package is left to pytest's summary."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
@pytest.mark.parametrize("module", ["steering.generate.nnsight", "app", "ui.events", "tests.unit.x", "benchmarks.app_latency"])
def test_a_deprecation_from_our_code_is_an_error(category, module):
    with pytest.raises(category):
        warnings.warn_explicit("old call", category, "x.py", 1, module=module)


@pytest.mark.parametrize("module", ["nnsight.modeling.language", "gradio.blocks", "apply", "uikit", "steering_extra"])
def test_a_deprecation_inside_another_package_is_not(module):
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit("old call", DeprecationWarning, "x.py", 1, module=module)
    assert len(seen) == 1
