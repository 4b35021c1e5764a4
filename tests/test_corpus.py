"""The corpus builder: extraction helpers, budgets, the held-out split and the manifest (no network)."""

import json
import zipfile

from steering import corpus
from steering.corpus import Source, _strip_rst, build, document_ids, is_heldout, take_budget


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


def test_chat_documents_go_through_the_template(smollm2):
    _, tok = smollm2
    ids = document_ids(tok, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})
    text = tok.decode(ids)
    assert text.count("<|im_start|>") == 3  # default system turn + user + assistant
    assert "Hello!" in text
    assert document_ids(tok, {"text": "plain text"}) == tok("plain text", add_special_tokens=False)["input_ids"]


def test_build_writes_splits_and_manifest(tmp_path, monkeypatch, smollm2):
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "fake_pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("data.txt", "\n".join(f"Document number {i} is about gardens." for i in range(300)))

    def extract(path, tmp):
        with zipfile.ZipFile(path) as z:
            for line in z.read("data.txt").decode().splitlines():
                yield {"text": line}

    monkeypatch.setitem(corpus.EXTRACTORS, "fake", extract)
    src = Source("fake", "pypi", "fake-pkg", "1.0", "MIT", "Fake, MIT.", "test text", budget_chars=3000, chat_share=0.5)
    m = build(tmp_path, answers=0, sources=[src], tokenizer=smollm2[1])
    (entry,) = m["sources"]
    assert entry["licence"] == "MIT" and len(entry["sha256"]) == 64 and entry["documents"] > 50
    train = [json.loads(l) for l in (tmp_path / "train.jsonl").read_text().splitlines()]
    held = [json.loads(l) for l in (tmp_path / "heldout.jsonl").read_text().splitlines()]
    assert len(train) + len(held) == entry["documents"]
    assert any("messages" in d for d in train) and any("text" in d for d in train)
    assert m["tokens"]["train"] == entry["tokens_train"] > 0
    assert json.loads((tmp_path / "manifest.json").read_text())["tokens"] == m["tokens"]
