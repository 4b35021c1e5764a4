"""The one sampling loop: every answer (served alone or batched, compared, evaluated) comes from `Decoder.run`.

A lone request is a batch of one. `model.generate` drives the forward passes with its KV cache
and stays in greedy mode; `RowSampler` chooses each row's token itself (its own penalty, sampling
settings and seeded generator) and `RowStops` ends rows one by one (end of turn, length, a stop
text, Stop) and streams each row's text. Rows are left-padded; each is steered by its own plan
with positions counted from its own first token (`SteeringHooks.steering_rows`), so a row
behaves as its request would alone, up to float rounding of the batched products.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import torch
from torch import Tensor
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    StoppingCriteria,
    TextStreamer,
)

from steering.config import GenerationSettings
from steering.generate.sampling import (
    repetition_penalty,
    sample_token,
    seeded_generator,
)
from steering.model.padding import padded
from steering.steer.plan import SteeringPlan

END = None
"""Put on a request's event queue after its last piece."""


class RowText(TextStreamer):
    """transformers' incremental detokenizer for one row, writing `(tag, piece)` to a queue."""

    def __init__(self, tokenizer, events: queue.SimpleQueue, tag: int):
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.events, self.tag = events, tag

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.events.put((self.tag, text))


@dataclass(frozen=True, eq=False)
class RequestSpec:
    """What to generate, fixed when the request is made: no decoder changes it."""

    input_ids: Tensor  # (1, T), no padding
    plan: SteeringPlan | None
    settings: GenerationSettings
    tag: int = 0  # which answer of its stream this is: its pieces arrive as `(tag, piece)`
    record_logits: bool = False
    chat_key: str = ""  # the conversation's opening (remote servers: every turn of a chat goes to one server)


@dataclass(eq=False)
class Request:
    """One answer being generated: its `spec` and the row's running state, which its decoder writes and its
    consumer reads. `events` receives `(tag, piece)` and finally `(tag, END)`."""

    spec: RequestSpec
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    stop_event: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)
    logits: list[Tensor] = field(default_factory=list)  # each step's scores, when `spec.record_logits`
    cached_tokens: int = 0  # prompt tokens served from a prefix cache (the vLLM backend reports them)
    done: bool = False
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator | None = None
    text: RowText | None = None
    release: Callable[[], None] | None = None  # the decoder's count of requests in flight
    batch: Sequence["Request"] = ()  # the rows run with this one, and the thread running them
    thread: threading.Thread | None = None

    def start(self, tokenizer) -> None:
        """Ready the row for a batch: its generator and detokenizer."""
        spec = self.spec
        if spec.settings.temperature > 0 and self.generator is None:
            self.generator = seeded_generator(spec.settings.seed, spec.input_ids.device)
        if self.text is None:
            self.text = RowText(tokenizer, self.events, spec.tag)

    def finish(self) -> None:
        if not self.done:
            self.done = True
            if self.text is not None:
                self.text.end()
        if not self.finished.is_set():
            if self.release is not None:
                self.release()
            self.finished.set()
            self.events.put((self.spec.tag, END))


class RowSampler(LogitsProcessor):
    """Each row's own penalty and sampling; leaves only the chosen token so greedy `generate` takes it."""

    def __init__(self, rows: Sequence[Request], offsets: Sequence[int]):
        self.rows, self.offsets = rows, offsets

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        out = torch.full_like(scores, float("-inf"))
        for b, row in enumerate(self.rows):
            if row.done or row.stop_event.is_set():
                out[b, 0] = 0.0  # a finished (or stopped: `RowStops` drops it) row's token is replaced by padding
                continue
            s, settings = scores[b : b + 1], row.spec.settings
            if row.spec.record_logits:
                row.logits.append(s[0].detach().clone())
            s = repetition_penalty(s, input_ids[b : b + 1, self.offsets[b] :], settings.repetition_penalty)
            out[b, int(sample_token(s, settings.temperature, settings.top_p, row.generator))] = 0.0
        return out


class RowStops(StoppingCriteria):
    """Hands each row its new token and ends rows one by one: end of turn, length, `stop_text`, Stop.

    It reads the new tokens from `input_ids` rather than through `generate`'s streamer, whose
    call order relative to the stopping criteria differs between transformers versions. A row
    stopped during a step ends at that step's boundary without the step's token: its text ends
    where it was when Stop came, and no further step runs for it.
    """

    def __init__(self, rows: Sequence[Request], eos_ids: Iterable[int], tokenizer=None, stop_text: str | None = None):
        self.rows, self.eos_ids = rows, set(eos_ids)
        self.tokenizer, self.stop_text = tokenizer, stop_text

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs) -> Tensor:
        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            if row.done:
                continue
            if row.stop_event.is_set():
                del row.logits[len(row.tokens):]  # a logit recorded for the dropped token (Stop came after the sampler)
                row.finish()
                continue
            row.tokens.append(token)
            row.text.put(torch.tensor([token]))
            if (token in self.eos_ids or len(row.tokens) >= row.spec.settings.max_new_tokens
                    or (self.stop_text and self.stop_text in self.tokenizer.decode(row.tokens[-16:]))):
                row.finish()
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


class Runner(Protocol):
    """How a batch's forward passes are steered: the hooks (per row) or nnsight (one plan for all rows)."""

    per_row: bool

    def generate(self, rows: Sequence[Request], offsets: Sequence[int], **generate_kwargs) -> None: ...


class InFlight:
    """The requests generating right now, for every decoder: `take` counts the live ones of a batch (each
    releases itself when it ends) and finishes the ones stopped before they started; returns the live ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def _add(self, delta: int) -> None:
        with self._lock:
            self.count += delta

    def take(self, rows: Sequence[Request]) -> list[Request]:
        live = [r for r in rows if not r.stop_event.is_set()]
        for r in live:
            self._add(+1)
            r.release = lambda: self._add(-1)
        for r in rows:
            if r not in live:
                r.finish()
        return live


class Decoder:
    """Runs batches of requests through `runner` with the shared sampler and stops (see the module docstring)."""

    def __init__(self, model, tokenizer, runner: Runner, eos_ids: Iterable[int], stop_text: str | None = None):
        self.model, self.tokenizer, self.runner = model, tokenizer, runner
        self.eos_ids = sorted(set(eos_ids))
        self.stop_text = stop_text
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self.in_flight = InFlight()

    @property
    def active(self) -> int:
        """Requests generating right now: taken by `run`, released as each one ends."""
        return self.in_flight.count

    def run(self, rows: Sequence[Request]) -> None:
        """Generate all `rows` on the calling thread (one batch where the runner steers per row);
        every row ends, whatever happens, and an error reaches each row it touched."""
        live = self.in_flight.take(rows)
        groups = [live] if self.runner.per_row else [[r] for r in live]
        for group in groups:
            try:
                if group and not all(r.stop_event.is_set() for r in group):  # stopped while waiting its turn
                    self._generate(group)
            except BaseException as exc:  # surfaced to each row's consumer
                for r in group:
                    r.error = exc
            finally:
                for r in group:
                    r.finish()

    def _generate(self, rows: Sequence[Request]) -> None:
        device = rows[0].spec.input_ids.device
        for r in rows:
            r.start(self.tokenizer)
        ids, mask = padded([r.spec.input_ids[0].tolist() for r in rows], self.pad_id, left=True)
        offsets = [ids.shape[-1] - int(r.spec.input_ids.shape[-1]) for r in rows]
        base = self.model.generation_config
        config = GenerationConfig(
            max_new_tokens=max(r.spec.settings.max_new_tokens for r in rows), do_sample=False,
            eos_token_id=self.eos_ids or base.eos_token_id, pad_token_id=self.pad_id, bos_token_id=base.bos_token_id,
        )
        with torch.inference_mode():
            self.runner.generate(
                rows, offsets, input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                logits_processor=[RowSampler(rows, offsets)],
                stopping_criteria=[RowStops(rows, self.eos_ids, self.tokenizer, self.stop_text)],
            )
