"""The one answer loop of the offline evaluation, and where its answers are kept.

`generate` sends one request per prompt through the serving path (`Engine.request`, `Engine.run_now`: the
engine's own decoder with the config's sampling settings), each with its own seed, so an answer does not depend
on which prompts share its batch (up to float rounding) and the figures measure what a visitor gets. Every
evaluation seeds prompt i with `seed * 1000 + i` (`seeds_for`).

`AnswerStore` keeps answer sets on disk: one file per set of what decides them (model, sampling settings and
length, system prompt, steering), answers by seed and prompt. A run keeps its own under `<run>/answers/`, so
re-running or extending a run generates only what it lacks; unsteered and system-prompt answers also go to a
store shared by all runs (`shared_dir()`), so a new run does not regenerate the unsteered answers its grade
thresholds are fitted on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from steering.model.embedded import cache_root


def seeds_for(seed: int, n: int) -> list[int]:
    """The sampling seed of each of n prompts at run seed `seed`: `seed * 1000 + i`."""
    return [seed * 1000 + i for i in range(n)]


def generate(engine, prompts: Sequence[str], seeds: Sequence[int], max_new_tokens: int, plan=None,
             system_prompt: str | None = None, batch_size: int = 16) -> list[list[int]]:
    """Answers (token ids, up to the end-of-turn token) to each prompt, prompt i sampled with `seeds[i]`.
    `plan` steers every row, or is a list with one plan per row (rows with different steering share a batch);
    `system_prompt` None sends no system turn."""
    settings = engine.config.generation
    plans = list(plan) if isinstance(plan, (list, tuple)) else [plan] * len(prompts)
    eos = set(engine.eos_ids())
    out: list[list[int]] = []
    for b in range(0, len(prompts), batch_size):
        rows = range(b, min(b + batch_size, len(prompts)))
        requests = [engine.request([{"role": "user", "content": prompts[i]}], plans[i],
                                   replace(settings, max_new_tokens=max_new_tokens, seed=seeds[i]), system_prompt)
                    for i in rows]
        engine.run_now(requests)
        for r in requests:
            if r.error is not None:
                raise r.error
            ids = list(r.tokens)
            out.append(ids[: next((k for k, t in enumerate(ids) if t in eos), len(ids))])
    return out


def shared_dir() -> Path:
    """The store shared by all runs (named as the scorer's first answer cache, so those answers stay valid)."""
    return cache_root() / "axbench"


class AnswerStore:
    """Answer sets in a folder: `<name>-<hash of key>.json` holds {"key": key, "answers": {"seed|prompt": ids}}."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: Mapping, name: str) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return self.folder / f"{name}-{digest}.json"

    def read(self, key: Mapping, name: str) -> dict[str, list[int]]:
        path = self.path(key, name)
        return json.loads(path.read_text())["answers"] if path.exists() else {}

    def add(self, key: Mapping, name: str, answers: Mapping[str, list[int]]) -> None:
        """Merge `answers` into the set's file (written whole, then renamed: never half a file)."""
        stored = {**self.read(key, name), **answers}
        path = self.path(key, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": dict(key), "answers": stored}))
        tmp.replace(path)


class Answers:
    """One engine's answers: read from the run's store (then the shared one, for unsteered and system-prompt
    answers), generated where neither has them, and kept in both."""

    def __init__(self, engine, run: AnswerStore | None, shared: AnswerStore | None = None, batch_size: int = 16):
        self.engine, self.run, self.shared, self.batch_size = engine, run, shared, batch_size
        self.generated = 0  # answers generated (not read from a store) by this object

    def key(self, max_new_tokens: int, system_prompt: str | None, steering: Mapping | None) -> dict:
        settings = replace(self.engine.config.generation, max_new_tokens=max_new_tokens, seed=None)
        key = {"model": str(self.engine.config.model), "settings": asdict(settings), "system": system_prompt}
        return key if steering is None else {**key, "steering": dict(steering)}

    def get(self, prompts: Sequence[str], seed: int, max_new_tokens: int, *, plan=None, steering: Mapping | None = None,
            system_prompt: str | None = None, name: str = "unsteered") -> list[list[int]]:
        """Answers to `prompts` at run seed `seed`; a steered set passes its `plan` and a `steering` mapping that
        names everything the plan depends on (it keys the store: a set is never reused for other steering)."""
        if (plan is None) != (steering is None):
            raise ValueError("pass plan and steering together: steering names what the plan does, for the store")
        key = self.key(max_new_tokens, system_prompt, steering)
        seeds = seeds_for(seed, len(prompts))
        names = [f"{s}|{p}" for p, s in zip(prompts, seeds)]
        stores = [(s, n) for s, n in ((self.run, name), (self.shared if steering is None else None, "answers"))
                  if s is not None]
        held = [store.read(key, n) for store, n in stores]
        found: dict[str, list[int]] = {}
        for h in reversed(held):  # the run's own answers first
            found.update(h)
        missing = [i for i, n in enumerate(names) if n not in found]
        if missing:
            new = generate(self.engine, [prompts[i] for i in missing], [seeds[i] for i in missing], max_new_tokens,
                           plan, system_prompt, self.batch_size)
            self.generated += len(new)
            found.update({names[i]: a for i, a in zip(missing, new)})
        for (store, n), h in zip(stores, held):  # each store ends up with all of them (the run's: self-contained)
            lacking = {x: found[x] for x in names if x not in h}
            if lacking:
                store.add(key, n, lacking)
        return [found[n] for n in names]
