"""A request as the engine sees it, and the events it sends back to the asyncio side."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from providers.local.server.models import ServedModel


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # vLLM's extension: always generate max_tokens
    min_tokens: int = 0  # vLLM's extension: no EOS before this many tokens


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    text: str  # streaming: the text not sent yet; otherwise the whole completion
    finish_reason: str  # "stop" or "length" (OpenAI's values)
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str


Event = Delta | Finished | Failed


class QueueFull(Exception):
    """Every batch slot and queue place is taken (429)."""


class NotAccepting(Exception):
    """The engine is stopping or not started (503)."""


class Handle:
    """One request as the engine sees it; events arrive on `events` in the caller's loop."""

    def __init__(
        self,
        model: ServedModel,
        prompt_ids: list[int],
        params: SamplingParams,
        stream: bool,
        loop: asyncio.AbstractEventLoop,
    ):
        self.model = model
        self.prompt_ids = prompt_ids
        self.params = params
        self.stream = stream
        self.loop = loop
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.submitted = time.perf_counter()
        self.cancelled = False  # set by the asyncio side; read by the worker
        self.done = False  # Finished or Failed was pushed
        self.released = False  # its batch slot was given back (worker only)

    def push(self, event: Event) -> None:
        if isinstance(event, Finished | Failed):
            self.done = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
