"""Feature labels made of whole words, and how to measure that they are.

**Whole word in context**: the token a feature fires on, merged with its neighbours in the text while
they continue the same word (a piece that starts with a letter, after a piece that ends with one, at
most `SPAN` tokens either side): " strugg" + "ling" reads "struggling", "agna" after " las" reads
"lasagna".

**English word** (`is_word`): a word of the word list (default `/usr/share/dict/words`, Debian's
`wamerican`: SCOWL's American English list, with plurals and verb forms), compared in lower case,
at least two letters; a hyphenated word when each part is. A label "is whole words" (`label_is_words`)
when every part between " / " (after a leading "→ ") is English words.

**Label** (`choose_label`): up to three words the feature fires on, by summed activation over its top
activations. Words of the list come first; a whole word outside it ("numpy") is kept only when it
carries at least half the top word's weight. When punctuation or whitespace carries most of the
weight, the label starts with the top one's name ("newline / education"). Without any, the promoted words (tokens that begin a
word, are in the list, from what the feature promotes) marked "→"; without those, the names of the
punctuation or control tokens it fires on ("comma / full stop")."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

WORDS_PATH = Path("/usr/share/dict/words")
SPAN = 4
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")
_CONTROL = {"<|im_start|>": "turn start", "<|im_end|>": "turn end", "<|endoftext|>": "end of text"}


def load_words(path: Path | str = WORDS_PATH) -> frozenset[str]:
    """The word list, lower case. Missing: install Debian's `wamerican` (`apt-get install wamerican`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: `apt-get install wamerican` installs the English word list")
    return frozenset(w.strip().lower() for w in path.read_text(encoding="utf-8", errors="replace").splitlines() if w.strip())


def is_word(text: str, words: frozenset[str]) -> bool:
    """Every space-separated word of `text` is in `words` (lower case, >= 2 letters; hyphen parts each)."""
    parts = text.split()
    return bool(parts) and all(
        all(len(p) >= 2 and p.lower() in words for p in part.split("-")) for part in parts)


def label_parts(label: str) -> list[str]:
    label = label[2:] if label.startswith("→ ") else label
    return [p.strip() for p in label.split(" / ")]


def label_is_words(label: str, words: frozenset[str]) -> bool:
    """Every part of the label is English words (see the module docstring)."""
    return all(is_word(p, words) for p in label_parts(label))


def word_share(labels: Iterable[str], words: frozenset[str]) -> float:
    """Share of `labels` that are whole English words."""
    labels = list(labels)
    return sum(label_is_words(x, words) for x in labels) / len(labels) if labels else 0.0


def _continues(prev: str, cur: str) -> bool:
    return bool(prev) and bool(cur) and prev[-1].isalpha() and cur[0].isalpha()


def whole_word(pieces: Sequence[str], p: int, span: int = SPAN) -> str:
    """The text of the word token `p` belongs to, merged with the neighbouring pieces that continue it."""
    lo = p
    while lo > 0 and p - lo < span and _continues(pieces[lo - 1], pieces[lo]):
        lo -= 1
    hi = p
    while hi + 1 < len(pieces) and hi - p < span and _continues(pieces[hi], pieces[hi + 1]):
        hi += 1
    return "".join(pieces[lo : hi + 1])


def word_of(text: str) -> str | None:
    """The first word (letters, inner apostrophes or hyphens) of a piece, lower case."""
    m = _WORD.search(text)
    return m.group(0).lower() if m else None


def punctuation_name(piece: str) -> str | None:
    """A readable name of a non-word token: "comma", "newline", "turn start"."""
    if piece in _CONTROL:
        return _CONTROL[piece]
    if piece and not piece.strip():
        return "newline" if "\n" in piece else "space"
    s = piece.strip()
    if len(s) == 1 and not s.isalnum():
        return unicodedata.name(s, "").lower() or None
    if s.isdigit():
        return "number"
    return None


def choose_label(weighted: Sequence[tuple[str, float]], promoted: Sequence[str], words: frozenset[str],
                 pieces: Sequence[tuple[str, float]] = (), n: int = 3) -> str:
    """The label of one feature (see the module docstring).

    `weighted`: whole words in context with summed activations, strongest first; `promoted`: token
    pieces the feature promotes, strongest first; `pieces`: the activating token pieces with weights
    (for the punctuation fallback)."""
    ranked: Counter = Counter()
    for w, v in weighted:
        if (k := word_of(w)) is not None:
            ranked[k] += v
    total = sum(v for _, v in weighted)
    names = [name for t, _ in pieces if (name := punctuation_name(t))]
    lead = names[:1] if names and total and sum(ranked.values()) < 0.5 * total else []
    top = ranked.most_common(1)[0][1] if ranked else 0.0
    out = [w for w, v in ranked.most_common() if is_word(w, words) or (v >= 0.5 * top and len(w) >= 3)]
    if out:
        return " / ".join((lead + out)[:n])
    said = [w for t in promoted if t[:1] == " " and (w := word_of(t)) and len(w) >= 3 and is_word(w, words)]
    if said:
        return "→ " + " / ".join(list(dict.fromkeys(said))[:n])
    if names:
        return " / ".join(list(dict.fromkeys(names))[:n])
    shown = [t.strip() or repr(t) for t, _ in pieces[:n]]
    return " / ".join(shown) if shown else "(dead)"
