"""`FeatureKey`: the one codec for a feature's name, `L15:123` (layer 15, feature 123).

A key is a `(layer, index)` tuple, so it sorts, hashes and unpacks like one; `str(key)` and
`FeatureKey.parse(text)` are the only places the text form is written and read.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_PATTERN = re.compile(r"^L(\d{1,4}):(\d{1,9})$")


class FeatureKey(NamedTuple):
    layer: int
    index: int

    def __str__(self) -> str:
        return f"L{self.layer}:{self.index}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    @classmethod
    def parse(cls, text: object) -> "FeatureKey":
        """`"L15:123"` (surrounding spaces allowed) -> FeatureKey(15, 123); a FeatureKey or a
        `(layer, index)` pair of whole numbers passes through. Anything else is a ValueError that
        shows the value and the expected form."""
        if isinstance(text, FeatureKey):
            return text
        if isinstance(text, tuple) and len(text) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in text):
            return cls(*text)
        if isinstance(text, str):
            found = _PATTERN.match(text.strip())
            if found:
                return cls(int(found.group(1)), int(found.group(2)))
        raise ValueError(f"{text!r} is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123")
