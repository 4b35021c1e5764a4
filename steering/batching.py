"""Concurrent chats batched into one forward pass per step, each row steered by its own request.

Why: one decoding step of a model this size costs about the same for four rows as for one
(it is bound by reading the weights, on a CPU and on a GPU alike), so requests that arrive
together should share their steps. Requests submitted within `window_s` of the first one form a
batch; the batch runs on its own thread until its last row ends, and later requests form new
batches beside it. (A running batch takes no newcomers: `generate` keeps one batch throughout.)

Every row keeps what a lone request has: its own steering plan (`hooks.steering_rows`, with
positions counted from the row's own first token), sampling settings, seeded generator,
repetition penalty over its own tokens only, length limit, Stop, and text stream. Left padding
and the batched matrix products change a row's logits only at float rounding level (measured in
`benchmarks/batching.py`), so a seeded or greedy answer is the same text in practice, not by
construction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor
from transformers import LogitsProcessor, RepetitionPenaltyLogitsProcessor, StoppingCriteria, TextIteratorStreamer

from .config import GenerationSettings
from .generation import generation_config, sample_token, seeded_generator
from .hooks import SteeringPlan, steering_rows
from .inspector import padded


def repetition_penalty(scores: Tensor, seen_ids: Tensor, penalty: float) -> Tensor:
    """transformers' repetition penalty on one row (1, V), over that row's own token ids `seen_ids` (1, L)."""
    if penalty == 1.0 or seen_ids.numel() == 0:
        return scores
    return RepetitionPenaltyLogitsProcessor(penalty)(seen_ids, scores)


@dataclass(eq=False)
class Row:
    """One request inside a batch."""

    input_ids: Tensor  # (1, T) on the model's device, no padding
    plan: SteeringPlan | None
    settings: GenerationSettings
    stop_event: threading.Event
    streamer: TextIteratorStreamer
    record_logits: bool = False
    tokens: list[int] = field(default_factory=list)
    logits: list[Tensor] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.settings.temperature > 0:
            self.generator = seeded_generator(self.settings.seed, self.input_ids.device)

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.streamer.end()
        self.finished.set()


class RowSampler(LogitsProcessor):
    """Each row's own penalty and sampling; leaves only the chosen token so greedy `generate` takes it."""

    def __init__(self, rows: Sequence[Row], offsets: Sequence[int]):
        self.rows, self.offsets = rows, offsets

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        out = torch.full_like(scores, float("-inf"))
        for b, row in enumerate(self.rows):
            if row.done:
                out[b, 0] = 0.0  # a finished row's token is replaced by padding anyway
                continue
            s = scores[b : b + 1]
            if row.record_logits:
                row.logits.append(s[0].detach().clone())
            s = repetition_penalty(s, input_ids[b : b + 1, self.offsets[b] :], row.settings.repetition_penalty)
            chosen = sample_token(s, row.settings.temperature, row.settings.top_p, row.generator)
            out[b, int(chosen)] = 0.0
        return out


class RowStops(StoppingCriteria):
    """Hands each row its new token and ends rows one by one (end of turn, length, Stop).

    It reads the new tokens from `input_ids` rather than through `generate`'s streamer, whose
    call order relative to the stopping criteria differs between transformers versions.
    """

    def __init__(self, rows: Sequence[Row], eos_ids: Iterable[int]):
        self.rows, self.eos_ids = rows, set(eos_ids)

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs) -> Tensor:
        new = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, new):
            if row.done:
                continue
            row.tokens.append(token)
            row.streamer.put(torch.tensor([token]))
            if token in self.eos_ids or len(row.tokens) >= row.settings.max_new_tokens or row.stop_event.is_set():
                row.finish()
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


class _Forming:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.full = threading.Event()


class Batcher:
    """Collects requests that arrive together and runs them as one batch (see the module docstring)."""

    def __init__(self, model, tokenizer, eos_ids: Iterable[int], special_ids: Iterable[int] = (),
                 window_s: float = 0.015, max_batch: int = 8):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = sorted(set(eos_ids))
        self.special_ids = list(special_ids)
        self.window_s, self.max_batch = window_s, max_batch
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self._lock = threading.Lock()
        self._forming: _Forming | None = None
        self.batch_sizes: list[int] = []  # of every batch run, for benchmarks and tests

    def submit(self, row: Row) -> None:
        with self._lock:
            forming = self._forming
            if forming is None or len(forming.rows) >= self.max_batch:
                forming = self._forming = _Forming()
                threading.Thread(target=self._launch, args=(forming,), name="steering-batch", daemon=True).start()
            forming.rows.append(row)
            if len(forming.rows) >= self.max_batch:
                forming.full.set()

    def _launch(self, forming: _Forming) -> None:
        forming.full.wait(self.window_s)
        with self._lock:
            if self._forming is forming:
                self._forming = None
            rows = list(forming.rows)
        self.run(rows)

    def run(self, rows: Sequence[Row]) -> None:
        """Generate all `rows` as one batch on the calling thread; every row ends, whatever happens."""
        live = [r for r in rows if not r.stop_event.is_set()]
        for r in rows:
            if r not in live:
                r.finish()
        try:
            if live:
                self.batch_sizes.append(len(live))
                self._generate(live)
        except BaseException as exc:  # surfaced to each row's consumer
            for r in live:
                r.error = exc
        finally:
            for r in live:
                r.finish()

    def _generate(self, rows: Sequence[Row]) -> None:
        ids, mask = padded([r.input_ids[0].tolist() for r in rows], self.pad_id, left=True)
        ids, mask = ids.to(rows[0].input_ids.device), mask.to(rows[0].input_ids.device)
        offsets = [ids.shape[-1] - int(r.input_ids.shape[-1]) for r in rows]
        longest = max(r.settings.max_new_tokens for r in rows)
        # each row's own penalty is applied by RowSampler, over its own tokens only
        config = generation_config(self.model, GenerationSettings(max_new_tokens=longest, repetition_penalty=1.0),
                                   self.eos_ids)
        config.pad_token_id = self.pad_id
        with torch.inference_mode(), steering_rows(self.model, [r.plan for r in rows], [r.input_ids for r in rows],
                                                   offsets, self.special_ids):
            self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=[RowSampler(rows, offsets)],
                stopping_criteria=[RowStops(rows, self.eos_ids)],
            )


class BatchedGeneration:
    """A request served by a `Batcher`, with the same surface as `generation.Generation`."""

    def __init__(self, batcher: Batcher, input_ids: Tensor, plan: SteeringPlan | None = None,
                 settings: GenerationSettings = GenerationSettings(), stop_event: threading.Event | None = None,
                 timeout_s: float | None = None, record_logits: bool = False):
        self.batcher = batcher
        self.input_ids = input_ids.to(batcher.model.device)
        self.plan, self.settings = plan, settings
        self.stop_event = stop_event or threading.Event()
        streamer = TextIteratorStreamer(batcher.tokenizer, skip_prompt=False, skip_special_tokens=True, timeout=timeout_s)
        self.row = Row(self.input_ids, plan, settings, self.stop_event, streamer, record_logits=record_logits)
        self._started = False

    def start(self) -> "BatchedGeneration":
        if not self._started:
            self._started = True
            self.batcher.submit(self.row)
        return self

    def __iter__(self) -> Iterator[str]:
        self.start()
        try:
            for piece in self.row.streamer:
                if piece:
                    yield piece
        finally:
            self.stop()
        if self.row.error is not None:
            raise self.row.error

    def stop(self, timeout: float | None = None) -> None:
        """Ask this row to end after the current token and wait until it has (the batch may go on)."""
        self.stop_event.set()
        if self._started:
            self.row.finished.wait(timeout)

    @property
    def error(self) -> BaseException | None:
        return self.row.error

    @property
    def new_token_ids(self) -> Tensor | None:
        return torch.tensor(self.row.tokens, dtype=torch.long) if self.row.finished.is_set() else None

    @property
    def logits(self) -> Tensor:
        """Raw next-token logits of each step (steps, V), when made with `record_logits`."""
        return torch.stack(self.row.logits)

    @property
    def running(self) -> bool:
        return self._started and not self.row.finished.is_set()
