"""steering/service/errors.py: what a visitor is told, without tracebacks or server paths."""

import logging

import pytest
import torch

from steering.service.errors import OUT_OF_MEMORY, scrub_paths, visitor_message
from steering.service.limits import UserError


@pytest.mark.parametrize("text, expected", [
    ("cannot read /srv/app/saes/layer_15/sae.safetensors: truncated", "cannot read sae.safetensors: truncated"),
    ("delete /home/u/.cache/steering/x.pt and run it again", "delete x.pt and run it again"),
    ("see C:\\Users\\me\\demo.yaml", "see demo.yaml"),
    ("in ~/models/smol/config.json", "in config.json"),
    ("feature L15:3 at 40/120 and 3/4 of the way", "feature L15:3 at 40/120 and 3/4 of the way"),
    ("see https://example.org/a/b for more", "see https://example.org/a/b for more"),
])
def test_absolute_paths_are_cut_to_their_last_part(text, expected):
    assert scrub_paths(text) == expected


def test_a_visitor_error_is_shown_as_it_is_with_its_quotes():
    assert visitor_message(UserError("'garbage' is not a feature key")) == "'garbage' is not a feature key"
    assert visitor_message(KeyError("unknown feature 'L99:1'; known: L15:3")) == "unknown feature 'L99:1'; known: L15:3"


def test_a_value_error_keeps_its_message_but_not_the_path():
    assert visitor_message(ValueError("bad header in /data/sae/w.npz")) == "bad header in w.npz"


def test_out_of_memory_gets_the_advice(caplog):
    assert visitor_message(torch.OutOfMemoryError("CUDA out of memory")) == OUT_OF_MEMORY
    assert visitor_message(MemoryError()) == OUT_OF_MEMORY


def test_anything_else_is_generic_and_logged_with_its_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="steering.service"):
        shown = visitor_message(ZeroDivisionError("secret /etc/thing"))
    assert shown == "Something went wrong on the server (ZeroDivisionError). Your conversation is kept; try again."
    assert "secret" not in shown and caplog.records and caplog.records[0].exc_info
