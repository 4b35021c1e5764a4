"""The corpus builder: extraction helpers, budgets, the held-out split and the manifest (no network)."""

from steering.offline import corpus
from steering.offline.corpus import (
    document_ids,
    is_heldout,
    take_budget,
)
from steering.offline.sources import _strip_rst
from tests.helpers import tiny_tokenizer


def test_every_source_records_a_licence_and_attribution():
    for src in corpus.SOURCES + [corpus.ANSWERS]:
        assert src.licence and src.attribution, src.name
    share = {s.name: s.budget_chars for s in corpus.SOURCES}
    assert share["shakespeare"] / sum(share.values()) < 0.05  # archaic English stays a small share


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
