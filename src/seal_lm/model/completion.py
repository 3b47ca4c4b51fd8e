"""Completions for people: one prompt, streamed as text while it is generated (``seal serve``, ``seal chat``).

A :class:`CompletionWorker` owns one thread that runs completions one after another, with a fixed
number of compute threads, so a server's request handlers never start more OpenMP threads than they
were given. :meth:`CompletionWorker.submit` returns a :class:`CompletionStream` at once: iterate it for
the text as it grows; its ``result`` holds the whole completion, token counts and why it ended.

Sampling draws from the request's own random generator (seeded by the request's ``seed``), never
from PyTorch's global one: a seeded request is reproducible whatever else runs in the process, and
a learner training in another thread keeps its own seeded draws.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from seal_lm.model.generation import SampleEachRow

_END = object()  # the worker's last message on a stream's queue


@dataclass(frozen=True)
class Sampling:
    """How to complete: greedy when ``temperature`` is 0; ``seed`` None draws a fresh one."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # the text ends before the first of these
    seed: int | None = None


@dataclass
class Completion:
    """A finished completion: its text, token counts, and ``finish_reason`` "stop" (EOS or a stop string) or "length"."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


def chat_prompt(tokenizer, chat: bool, messages: Sequence[dict[str, str]]) -> str:
    """A conversation (``[{"role", "content"}]``) as one prompt: the chat template, or role-labelled lines for a model without one."""
    if chat:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


class CompletionStream:
    """A completion being generated. Iterate for text pieces; then ``result`` is the whole :class:`Completion`.

    Leaving the iteration early (a client that went away) cancels the generation.
    """

    def __init__(self, tokenizer, sampling: Sampling, prompt_tokens: int):
        self.sampling = sampling
        self.result = Completion(prompt_tokens=prompt_tokens)
        self._tokenizer = tokenizer
        self._pieces: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[str]:
        ids: list[int] = []
        emitted = ""
        hold = max((len(s) for s in self.sampling.stop), default=1) - 1  # a stop string may still be forming
        try:
            while (piece := self._pieces.get()) is not _END:
                if isinstance(piece, BaseException):
                    raise piece
                ids.extend(piece)
                text, stopped = self._text(ids)
                ready = text if stopped else _whole_characters(text)[: max(len(emitted), len(text) - hold)]
                if len(ready) > len(emitted):
                    yield ready[len(emitted) :]
                    emitted = ready
                if stopped:
                    break
            text, stopped = self._text(ids)
            if len(text) > len(emitted):
                yield text[len(emitted) :]
            eos = self._tokenizer.eos_token_id
            generated = ids.index(eos) if eos in ids else len(ids)
            self.result.text = text
            self.result.completion_tokens = generated
            hit_budget = not stopped and eos not in ids and generated >= self.sampling.max_tokens
            self.result.finish_reason = "length" if hit_budget else "stop"
        finally:
            self.cancelled.set()  # finished, failed or abandoned: the worker may stop generating

    def complete(self) -> Completion:
        """Run the completion to its end and return it."""
        for _ in self:
            pass
        return self.result

    def _text(self, ids: list[int]) -> tuple[str, bool]:
        """The decoded text so far, cut before the first stop string, and whether one was found."""
        eos = self._tokenizer.eos_token_id
        text = self._tokenizer.decode(ids[: ids.index(eos)] if eos in ids else ids, skip_special_tokens=True)
        cuts = [text.find(s) for s in self.sampling.stop if s in text]
        return (text[: min(cuts)], True) if cuts else (text, False)

    # -- the worker's side ----------------------------------------------------------------------

    def _put(self, item: object) -> None:
        self._pieces.put(item)


class CompletionWorker:
    """Runs completions one at a time on its own thread, with ``threads`` compute threads."""

    def __init__(self, threads: int = 1, name: str = "completions"):
        self.threads = threads
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, model: torch.nn.Module, tokenizer, prompt: str, sampling: Sampling) -> CompletionStream:
        """Queue a completion of ``prompt`` by ``model``; returns its stream at once."""
        prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        stream = CompletionStream(tokenizer, sampling, prompt_tokens=prompt_ids.shape[1])
        self._jobs.put((model, tokenizer, prompt_ids, stream))
        return stream

    def pending(self) -> int:
        """Completions waiting for the worker (not counting the one it is running)."""
        return self._jobs.qsize()

    def _run(self) -> None:
        torch.set_num_threads(self.threads)  # per thread: the learner's threads are its own
        while True:
            model, tokenizer, prompt_ids, stream = self._jobs.get()
            if stream.cancelled.is_set():
                stream._put(_END)
                continue
            try:
                _generate(model, tokenizer, prompt_ids, stream)
            except Exception as err:  # reported to the request that asked, the worker goes on
                stream._put(err)
            stream._put(_END)


@torch.inference_mode()
def _generate(model: torch.nn.Module, tokenizer, prompt_ids: torch.Tensor, stream: CompletionStream) -> None:
    sampling = stream.sampling
    device = next(model.parameters()).device
    processors = LogitsProcessorList()
    if sampling.temperature > 0:
        seed = sampling.seed if sampling.seed is not None else secrets.randbits(63)
        processors.append(SampleEachRow(sampling.temperature, sampling.top_p, [seed]))
    model.generate(
        input_ids=prompt_ids.to(device),
        attention_mask=torch.ones_like(prompt_ids, device=device),
        max_new_tokens=sampling.max_tokens,
        do_sample=False,  # the sampler above leaves one token possible; greedy takes it
        top_p=None,
        top_k=None,
        temperature=None,
        pad_token_id=tokenizer.pad_token_id,
        stop_strings=list(sampling.stop) or None,
        tokenizer=tokenizer if sampling.stop else None,
        logits_processor=processors,
        stopping_criteria=StoppingCriteriaList([_Cancelled(stream.cancelled)]),
        streamer=_TokenPipe(stream),
    )


class _Cancelled(StoppingCriteria):
    def __init__(self, cancelled: threading.Event):
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancelled.is_set(), dtype=torch.bool, device=input_ids.device)


class _TokenPipe(BaseStreamer):
    """Passes each new token from ``generate`` to the stream (the first call carries the prompt, skipped)."""

    def __init__(self, stream: CompletionStream):
        self.stream, self.prompt_seen = stream, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.stream._put(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


def _whole_characters(text: str) -> str:
    """``text`` without a trailing replacement character: the start of a multi-byte character still being generated."""
    return text.rstrip("\ufffd")
