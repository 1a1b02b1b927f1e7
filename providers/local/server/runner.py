"""Running the app under uvicorn with a graceful drain on SIGTERM/SIGINT.

uvicorn alone stops accepting connections at once on a signal. We first turn /health
and new generation requests to 503 (a load balancer takes the replica out), let the
requests in flight finish (up to drain_timeout), and only then let uvicorn shut down.
A second signal skips the drain (a third SIGINT forces the exit, as uvicorn does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from providers.local.server.gate import ServingState

log = logging.getLogger("recipe.serve")


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        state: ServingState,
        drain_timeout: float,
        on_ready: Callable[[str], None] | None = None,
    ):
        super().__init__(config)
        self.state = state
        self.drain_timeout = drain_timeout
        self.on_ready = on_ready
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[Any] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._loop = asyncio.get_running_loop()
        if not self.started or not self.servers:
            return
        port = self.servers[0].sockets[0].getsockname()[1]  # the real one when port=0
        host = self.config.host.strip("[]")
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        if self.on_ready is not None:
            self.on_ready(self.url)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is None and self._loop is not None and self.started:
            log.info(
                "%s: draining (new requests get 503; %d in flight)",
                _signal_name(sig),
                self.state.in_flight,
            )
            self._loop.call_soon_threadsafe(self.begin_drain)
            # Not recorded in _captured_signals: after a drain, serve() returns normally
            # instead of uvicorn re-raising the signal (KeyboardInterrupt for SIGINT).
            return
        super().handle_exit(sig, frame)

    def begin_drain(self) -> None:
        """Start the drain (also usable without a signal: tests, an admin hook)."""
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        finished = await self.state.drain(self.drain_timeout)
        if not finished:
            log.warning(
                "drain timeout (%.0f s): %d request(s) still in flight are cut",
                self.drain_timeout,
                self.state.in_flight,
            )
        self.should_exit = True


def uvicorn_config(app: Any, host: str, port: int, drain_timeout: float) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="info",
        # The drain already waited for requests; this bounds what uvicorn waits on top.
        timeout_graceful_shutdown=max(1, int(drain_timeout)),
    )


def set_threads(count: int) -> None:
    import torch

    if "OMP_NUM_THREADS" not in os.environ:  # an explicit environment setting wins
        torch.set_num_threads(count)


def ensure_logging() -> None:
    """Our log lines next to uvicorn's when nobody configured logging."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
