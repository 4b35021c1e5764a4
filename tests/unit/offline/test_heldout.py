"""steering.offline.heldout: the extended held-out text holds the corpus's held-out split plus only documents the
corpus build did not pick, shared between sources by their training tokens."""

import json
from pathlib import Path

from steering.offline import heldout
from steering.offline.corpus import take_budget
from steering.offline.sources import Source


def _source(name, budget, chat_share=0.0):
    return Source(name, "pypi", name, "1", "MIT", "", "", budget, chat_share)


def test_extended_heldout_adds_only_documents_the_corpus_left_out(tmp_path, monkeypatch):
    docs = {"big": [{"text": f"big document {i} " * 10} for i in range(60)],
            "small": [{"text": f"small document {i} " * 10, "title": f"T{i}"} for i in range(30)]}
    sources = [_source("big", 3000), _source("small", 1000, chat_share=1.0)]
    monkeypatch.setattr(heldout, "profile_sources", lambda profile: sources)
    monkeypatch.setattr(heldout, "EXTRACTORS", {n: (lambda n: lambda path, tmp: iter([dict(d) for d in docs[n]]))(n)
                                                for n in docs})
    monkeypatch.setattr(heldout, "fetch", lambda src, raw: Path(raw) / src.name)
    (tmp_path / "manifest.json").write_text(json.dumps({"scale": 1.0, "sources": [
        {"name": "big", "tokens_train": 300}, {"name": "small", "tokens_train": 100}]}))
    (tmp_path / "heldout.jsonl").write_text(json.dumps({"id": "big:3", "source": "big", "text": "held out"}) + "\n")
    picked = {n: {d["text"] for d in take_budget([dict(x) for x in docs[n]], s.budget_chars, 0)}
              for n, s in zip(docs, sources)}
    got, counts = heldout.extended_heldout(tmp_path, tokens=1000)
    assert got[0]["id"] == "big:3" and counts["heldout_split"] == 1
    extra = got[1:]
    assert counts["big"] + counts["small"] == len(extra) > 0
    for d in extra:
        text = d.get("text") or d["messages"][1]["content"]
        assert text not in picked[d["source"]]  # never a document the corpus trained on
        assert d["id"].startswith(f"{d['source']}:unused:")
    assert all("messages" in d for d in extra if d["source"] == "small")  # chat_share 1: rendered as a chat
    assert counts["big"] > counts["small"]  # three times the training tokens
