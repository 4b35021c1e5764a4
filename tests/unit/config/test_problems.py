"""steering/config/problems.py: ConfigError and the wording every config problem shares."""

from __future__ import annotations

import pytest

from steering.config import ConfigError
from steering.config.problems import (
    check_bool,
    check_finite,
    check_int,
    check_str,
    int_fix,
    problem,
    raise_if,
    show,
    unknown_key,
)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_one_problem_is_the_message_many_are_listed():
    assert str(ConfigError("a: bad")) == "a: bad" and ConfigError("a: bad").problems == ("a: bad",)
    e = ConfigError(["a: bad", "b: worse"], source="demo.yaml")
    assert str(e) == "demo.yaml: 2 problems in the config:\na: bad\nb: worse"
    assert e.problems == ("a: bad", "b: worse") and e.source == "demo.yaml"
    assert str(ConfigError("a: bad", source="x.yaml")) == "x.yaml: a: bad"


def test_raise_if_only_with_problems():
    raise_if([])
    with pytest.raises(ConfigError, match="^x: y$"):
        raise_if(["x: y"])


@pytest.mark.parametrize(
    "value, shown",
    [
        (True, "true (a boolean)"),
        ("7", "'7' (a string)"),
        (None, "null"),
        (1.5, "1.5"),
        (float("nan"), "nan"),
        ([1, 2], "[1, 2] (a list of 2)"),
        ((1,), "[1] (a list of 1)"),
        ({"a": 1}, "{'a': 1} (a mapping)"),
        ({1, 2}, "{1, 2} (set)"),
    ],
)
def test_show_as_yaml_with_type(value, shown):
    assert show(value) == shown


def test_problem_wording():
    assert problem("sae.k", "must be >= 1", 0, "use 50") == "sae.k: must be >= 1, got 0. Fix: use 50"


def test_int_fix_suggests_the_nearest_spelling():
    assert int_fix(" 42 ", 0) == "write it without quotes: 42"
    assert int_fix("-3", 0) == "write it without quotes: -3"
    assert int_fix(15.0, 0) == "write it as a whole number: 15"
    assert int_fix(15.5, 7) == int_fix("²", 7) == int_fix(float("inf"), 7) == "write a whole number such as 7"


def test_checks_append_instead_of_raising():
    found: list[str] = []
    check_int(found, "a", 1, 5)
    check_int(found, "b", 0, 5, minimum=1)
    check_int(found, "c", -9, 5, minimum=None)
    assert found == ["b: must be >= 1, got 0. Fix: use a value >= 1, such as 5"]
    found.clear()
    assert check_finite(found, "s", 2, 8.0) and not check_finite(found, "s", "2.5", 8.0) and not check_finite(found, "s", "x", 8.0)
    assert found[0].endswith("Fix: write the number without quotes: 2.5") and found[1].endswith("Fix: write a number such as 8.0")
    found.clear()
    check_str(found, "p", None, "fix", optional=True)
    check_str(found, "p", "  ", "fix")
    check_bool(found, "flag", "yes")
    assert found == ["p: expected a non-empty string, got '  ' (a string). Fix: fix",
                     "flag: expected true or false, got 'yes' (a string). Fix: write flag: true or flag: false"]


def test_unknown_key_hints():
    assert unknown_key("sae.", "fromat", ("source", "format")) == "sae.fromat: unknown key. Fix: did you mean 'format'? Valid keys: source, format"
    assert unknown_key("", "temprature", ("model",), also=("temperature",)).startswith("temprature: unknown key. Fix: did you mean 'temperature'?")
    assert unknown_key("", 12, ("model",)) == "12: unknown key. Fix: remove it. Valid keys: model"
