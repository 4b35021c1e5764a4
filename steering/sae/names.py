"""What the SAE layer shares with pure-Python code: the one list of format names, and `SAEFormatError`.

No torch or numpy here (nor in `steering/sae/__init__.py`), so `steering.config` can validate
`sae.format` against the same list the registry is built from without importing torch.
"""

FORMAT_NAMES = ("saelens", "dictionary_learning", "gemma_scope", "qwen_scope", "sparsify", "goodfire")
"""Registered formats, in detection order; each is a module of the same name in `steering.sae.formats`."""

SAE_FORMATS = ("auto", *FORMAT_NAMES)
"""Values `sae.format` may take; `auto` detects the format from the files."""


class SAEFormatError(ValueError):
    """An SAE folder or file that cannot be read as the requested format; the message says what to fix."""
