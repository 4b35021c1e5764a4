"""The corpus builder: extraction helpers, budgets, the held-out split and the manifest (no network)."""

import pytest

from steering.offline import corpus, sources
from steering.offline.corpus import (
    document_ids,
    is_heldout,
    take_budget,
)
from steering.offline.sources import _strip_rst
from tests.helpers import tiny_tokenizer


def test_every_source_records_a_licence_and_attribution():
    for src in sources.SOURCES + sources.EXTRA_SOURCES + [corpus.ANSWERS]:
        assert src.licence and src.attribution, src.name
        assert src is corpus.ANSWERS or src.name in sources.EXTRACTORS


@pytest.mark.parametrize("profile", sorted(sources.PROFILES))
def test_profiles_keep_archaic_english_small(profile):
    share = {s.name: s.budget_chars for s in sources.profile_sources(profile)}
    assert share["shakespeare"] / sum(share.values()) < 0.05


def test_wide_profile_has_about_three_times_the_text():
    narrow = sum(s.budget_chars for s in sources.profile_sources("layer15"))
    wide = sum(s.budget_chars for s in sources.profile_sources("wide"))
    assert wide >= 2.9 * narrow
    with pytest.raises(ValueError, match="unknown corpus profile 'huge'.*layer15, wide"):
        sources.profile_sources("huge")


def test_strip_rst_removes_markup():
    text = "Title\n=====\n\n.. note::\n\nUse :func:`os.path.join` and ``x = 1`` here.\n"
    out = _strip_rst(text)
    assert "=====" not in out and ".. note" not in out
    assert "Use os.path.join and x = 1 here." in out


def test_take_budget_and_heldout_are_deterministic():
    docs = [{"text": "x" * 100} for _ in range(50)]
    a, b = take_budget(docs, 1000, seed=0), take_budget(docs, 1000, seed=0)
    assert a == b and sum(len(d["text"]) for d in a) == 1000
    ids = [f"s:{i}" for i in range(2000)]
    held = [i for i in ids if is_heldout(i)]
    assert held == [i for i in ids if is_heldout(i)] and 10 < len(held) < 90  # ~2%


def test_chat_documents_go_through_the_template_of_any_tokenizer():
    tok = tiny_tokenizer()
    doc = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "hello !"}]}
    text = ("<|im_start|>system\nYou are a helpful AI assistant named Tiny<|im_end|>\n"  # the default system turn
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nhello !<|im_end|>\n")
    assert document_ids(tok, doc) == tok(text, add_special_tokens=False)["input_ids"]
    assert document_ids(tok, {"text": "Hi there"}) == tok("Hi there", add_special_tokens=False)["input_ids"]
    assert tok.bos_token_id not in document_ids(tok, {"text": "Hi there"})  # BOS-free
