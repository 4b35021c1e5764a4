"""The corpus builder with the real SmolLM2 tokenizer: chat documents and a build with a fake source (no network)."""

import json
import zipfile

from steering.offline import corpus
from steering.offline.corpus import Source, build, document_ids


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
