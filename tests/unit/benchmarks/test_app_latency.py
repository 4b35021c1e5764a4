"""The app latency benchmark's own arithmetic (the benchmark itself runs the app: benchmarks/app_latency.py)."""

import importlib.util

import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("app_latency", ROOT / "benchmarks" / "app_latency.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_only_a_streamed_message_with_text_counts_as_the_first_token():
    assert not bench._has_text("process_generating", {"data": [""]})  # the empty first update
    assert bench._has_text("process_generating", {"data": [[["append", [], "My "]]]})  # a diff that adds text
    assert bench._has_text("ServerMessage.process_generating", {"data": ["My"]})
    assert not bench._has_text("process_generating", {"data": [[]]})  # a diff with no change
    assert not bench._has_text("process_completed", {"data": ["My answer"]})
    assert not bench._has_text("estimation", None)


def test_memory_per_extra_session_is_the_slope_of_peaks():
    out = bench.per_session({1: 1100.0, 2: 1110.0, 3: 1120.0, 4: 1130.0})
    assert out == {"fit_slope": 10.0, "differences": [10.0, 10.0, 10.0]}
    assert bench.per_session({1: 1000.0, 2: 1004.0, 3: 1020.0, 4: 1024.0})["fit_slope"] == pytest.approx(8.8)


def test_memory_reads_anonymous_and_file_backed_parts():
    import os

    m = bench.memory_mib(os.getpid())
    assert m["rss"] > 0 and m["anon"] > 0 and abs(m["anon"] + m["file"] - m["rss"]) < 0.2 * m["rss"]
