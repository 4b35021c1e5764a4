"""Text the SAE never trained on, enough of it for per-feature statistics, and its activation cache.

The corpus's held-out split (`heldout.jsonl`, 2% of documents by a hash of their id) is ~37k tokens.
`extended_heldout` adds the documents each source offers that `corpus.take_budget` did not pick for
the corpus (so neither split holds them), in proportion to each source's share of the training
tokens, rendered as chats at the source's `chat_share` like the corpus. Sources whose documents were
all taken (chatterbot) contribute their held-out split only.

    python -m steering.offline.heldout [--corpus DIR] [--tokens 120000] [--layer 15]

caches the layer's activations of that text under the cache root (`..._heldout_extended`)."""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from steering.offline.corpus import _doc_chars, document_ids, read_documents, take_budget
from steering.offline.sources import EXTRACTORS, fetch, profile_sources

SPLIT = "heldout_extended"
_ASK = "Tell me about {}."


def unused_documents(corpus: Path, seed: int = 0, scale: float = 1.0, profile: str = "layer15") -> dict[str, list[dict]]:
    """Per source, the documents `corpus.build` left out (not picked by its budget), as corpus documents."""
    out: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in profile_sources(profile):
            docs = list(EXTRACTORS[src.name](fetch(src, Path(corpus) / "raw"), Path(tmp)))
            picked = {id(d) for d in take_budget(docs, int(src.budget_chars * scale), seed)}
            rng = random.Random(seed + 2)
            rest = []
            for i, d in enumerate(x for x in docs if id(x) not in picked):
                d = {"id": f"{src.name}:unused:{i}", "source": src.name, **d}
                if src.chat_share and "text" in d and rng.random() < src.chat_share:
                    subject = d.get("title") or d["text"].split(".")[0][:60]
                    d["messages"] = [{"role": "user", "content": _ASK.format(subject)},
                                     {"role": "assistant", "content": d.pop("text")}]
                rest.append(d)
            out[src.name] = rest
    return out


def extended_heldout(corpus: Path, tokens: int, seed: int = 0) -> tuple[list[dict], dict]:
    """The held-out split plus unused documents up to about `tokens` (estimated at 4.2 characters a token),
    each source's share following its training tokens. Returns (documents, per-source counts)."""
    corpus = Path(corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    scale = float(manifest.get("scale", 1.0))
    docs = list(read_documents(corpus / "heldout.jsonl"))
    counts = {"heldout_split": len(docs)}
    have = sum(_doc_chars(d) for d in docs) / 4.2
    unused = unused_documents(corpus, seed, scale, manifest.get("profile", "layer15"))
    share = {s["name"]: s.get("tokens_train", 0) for s in manifest["sources"] if unused.get(s["name"])}
    total = sum(share.values()) or 1
    for name, extra in unused.items():
        if name not in share:
            continue
        chosen = take_budget(extra, int(max(0.0, tokens - have) * share[name] / total * 4.2), seed)
        docs += chosen
        counts[name] = len(chosen)
    return docs, counts


def main(argv: list[str] | None = None) -> None:
    from steering.model.embedded import cache_root
    from steering.model.loading import load_model
    from steering.offline.activations import cache_activations, default_cache_dir

    p = argparse.ArgumentParser(prog="python -m steering.offline.heldout", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=cache_root() / "corpus")
    p.add_argument("--model", default="embedded:smollm2-135m-instruct")
    p.add_argument("--layer", type=int, default=15)
    p.add_argument("--tokens", type=int, default=120_000)
    args = p.parse_args(argv)
    docs, counts = extended_heldout(args.corpus, args.tokens)
    model, tok = load_model(args.model, device="cpu", dtype="float32")[:2]
    folder = default_cache_dir(args.model, args.layer, args.corpus, SPLIT)
    meta = cache_activations(model, tok, docs, args.layer, folder, shard_tokens=16_384)
    meta["documents"] = counts
    meta["document_tokens"] = sum(len(document_ids(tok, d)) for d in docs)
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"cached {meta['tokens']:,} held-out positions in {folder}: {counts}")


if __name__ == "__main__":
    main()
