"""What a visitor is told when something fails: a readable message, never a traceback or a server path."""

from __future__ import annotations

import logging
import re

import torch

from steering.service.limits import UserError

log = logging.getLogger("steering.service")

OUT_OF_MEMORY = ("The server ran out of memory while answering: try fewer max new tokens, a shorter message, "
                 "or Clear to start a shorter conversation, then send again. Your conversation is kept.")

_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:\\|~/|/)(?:[^\s'\"`,;:()]+[/\\])+([^\s'\"`,;:()/\\]+)")


def scrub_paths(text: str) -> str:
    """`text` with every absolute file path (`/srv/x/y.pt`, `C:\\x\\y`, `~/x/y`) cut to its last part."""
    return _PATH.sub(lambda m: m.group(1), text)


def visitor_message(exc: BaseException) -> str:
    """The message to show for `exc`: the visitor's own mistake as it is, anything else as a generic line
    (logged with its traceback); server paths are scrubbed either way."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        log.warning("out of memory: %s", type(exc).__name__)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return OUT_OF_MEMORY
    if isinstance(exc, (UserError, ValueError)):
        return scrub_paths(str(exc))
    if isinstance(exc, ConnectionError):  # a steering server gone or busy (backends.routing): one line, no traceback
        log.warning("%s: %s", type(exc).__name__, exc)
        return scrub_paths(str(exc))
    if isinstance(exc, KeyError) and exc.args:
        return scrub_paths(str(exc.args[0]))
    log.error("unexpected error", exc_info=exc)
    return f"Something went wrong on the server ({type(exc).__name__}). Your conversation is kept; try again."
