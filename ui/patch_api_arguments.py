"""Gradio patch: the named API endpoints refuse extra values by name and give missing ones their defaults.

Gradio drops the values past a function's parameters without a word and answers too few with a traceback
(`Blocks.validate_inputs`, which `Blocks.preprocess_data` calls on every event). `apply` wraps that method on
one `Blocks` (an attribute of the instance, so other apps in the process are untouched) for the endpoints
`is_endpoint` names; every other event is left to Gradio. Checked against Gradio 6 (`check` fails, and
tests/unit/ui/test_gradio_patches.py with it, when the method it wraps changes shape).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable

import gradio as gr

from steering.service.errors import visitor_message
from steering.service.inputs import arguments
from steering.service.limits import UserError

GRADIO_MAJOR = "6"
PARAMETERS = ["self", "block_fn", "inputs"]


def check() -> None:
    """Raise if this Gradio is not the one the patch was written for (major version, and the method's shape)."""
    if gr.__version__.split(".")[0] != GRADIO_MAJOR:
        raise RuntimeError(f"ui/patch_api_arguments.py was written for Gradio {GRADIO_MAJOR}.x, found {gr.__version__}")
    found = list(inspect.signature(gr.Blocks.validate_inputs).parameters)
    if found != PARAMETERS or "self.validate_inputs(block_fn, inputs)" not in inspect.getsource(gr.Blocks.preprocess_data):
        raise RuntimeError(f"Gradio {gr.__version__} changed Blocks.validate_inputs ({found}) or where it is called: "
                           "ui/patch_api_arguments.py needs a look")


def apply(demo: gr.Blocks, is_endpoint: Callable[[Callable], bool]) -> None:
    check()
    validate = demo.validate_inputs

    def validate_inputs(self, block_fn, values):
        if is_endpoint(block_fn.fn) and isinstance(values, list):
            try:
                values[:] = arguments(f"/{block_fn.api_name}", block_fn.input_parameter_names,
                                      [b.value for b in block_fn.inputs], values)
            except UserError as exc:
                raise gr.Error(visitor_message(exc), print_exception=False) from None
        return validate(block_fn, values)

    demo.validate_inputs = types.MethodType(validate_inputs, demo)
