"""Streaming generation on a worker thread, steered for that request only.

Sampling draws from a per-request `torch.Generator` inside a logits processor and leaves
`generate` in greedy mode (why: `generate` samples from torch's global RNG, which concurrent
requests share, so a seed would not make a run reproducible while another one is running).
"""

from __future__ import annotations

import threading
from typing import Iterable, Iterator

import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessor, StoppingCriteria, TextIteratorStreamer

from .config import GenerationSettings
from .hooks import SteeringPlan, steering


PLAIN_TURN_STOP = "\nUser:"


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Mask (to -inf) the tokens outside the smallest set whose probability reaches top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p  # the first token is always kept
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """Token ids (B,) drawn from temperature- and top-p-adjusted logits (B, V); greedy at temperature 0."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = top_p_filter(logits.float() / temperature, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def seeded_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A request's own random generator: seeded, or from fresh entropy when `seed` is None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class SeededSampler(LogitsProcessor):
    """Samples with a private generator, then leaves only the chosen token so greedy picks it."""

    def __init__(self, temperature: float, top_p: float, seed: int | None, device: torch.device):
        self.temperature, self.top_p = temperature, top_p
        self.generator = seeded_generator(seed, device)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        chosen = sample_token(scores, self.temperature, self.top_p, self.generator)  # (B,)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, chosen.unsqueeze(-1), 0.0)


class StopOnEvent(StoppingCriteria):
    """Ends generation after the current token once `event` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs) -> Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def generation_config(model, settings: GenerationSettings, eos_ids: Iterable[int]) -> GenerationConfig:
    base = model.generation_config
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=False,
        repetition_penalty=settings.repetition_penalty,
        eos_token_id=sorted(set(eos_ids)) or base.eos_token_id,
        pad_token_id=base.pad_token_id if base.pad_token_id is not None else base.eos_token_id,
        bos_token_id=base.bos_token_id,
    )


class Generation:
    """One streamed, steered generation: iterate it for text pieces; `stop()` or `close()` ends it.

    The worker thread enters `steering()` itself, so the steering exists only in that thread and
    only while it generates. Closing the iterator (as Gradio does on Stop) stops the worker and
    waits for it, so nothing outlives the request.
    """

    def __init__(
        self,
        model,
        tokenizer,
        input_ids: Tensor,
        plan: SteeringPlan | None = None,
        settings: GenerationSettings = GenerationSettings(),
        special_ids: Iterable[int] | None = None,
        eos_ids: Iterable[int] = (),
        stop_event: threading.Event | None = None,
        timeout_s: float | None = None,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.input_ids = input_ids.to(model.device)
        self.plan, self.settings = plan, settings
        self.special_ids = special_ids
        self.eos_ids = list(eos_ids)
        self.stop_event = stop_event or threading.Event()
        self.streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s)
        self.output_ids: Tensor | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="steering-generate", daemon=True)
        self._started = False

    def generate_kwargs(self) -> dict:
        """Arguments of `model.generate` for this request (shared with other backends)."""
        s = self.settings
        processors = [SeededSampler(s.temperature, s.top_p, s.seed, self.input_ids.device)] if s.temperature > 0 else []
        kwargs = dict(
            input_ids=self.input_ids,
            attention_mask=torch.ones_like(self.input_ids),
            generation_config=generation_config(self.model, s, self.eos_ids),
            logits_processor=processors,
            stopping_criteria=[StopOnEvent(self.stop_event)],
            streamer=self.streamer,
        )
        if not getattr(self.tokenizer, "chat_template", None):  # plain completion: stop before a new turn
            kwargs["generation_config"].stop_strings = [PLAIN_TURN_STOP]
            kwargs["tokenizer"] = self.tokenizer
        return kwargs

    def generate(self, kwargs: dict) -> Tensor:
        """Run generation on the worker thread, steered by request-scoped hooks."""
        with steering(self.model, self.plan, self.input_ids, self.special_ids):
            return self.model.generate(**kwargs)

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                self.output_ids = self.generate(self.generate_kwargs())
        except BaseException as exc:  # surfaced to the consumer in __iter__
            self.error = exc
            self.streamer.end()

    def start(self) -> "Generation":
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def __iter__(self) -> Iterator[str]:
        self.start()
        try:
            for piece in self.streamer:
                if piece:
                    yield piece
        finally:
            self.stop()
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float | None = None) -> None:
        """Ask the worker to stop after the current token and wait until it has exited."""
        self.stop_event.set()
        if self._started:
            self._thread.join(timeout)

    @property
    def new_token_ids(self) -> Tensor | None:
        if self.output_ids is None:
            return None
        return self.output_ids[0, self.input_ids.shape[-1]:]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def generate_text(model, tokenizer, input_ids: Tensor, **kwargs) -> str:
    """Blocking convenience: the whole streamed answer as one string."""
    return "".join(Generation(model, tokenizer, input_ids, **kwargs))
