"""What `recipe serve` was asked to serve, and how (pure data, no torch)."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from recipes.errors import Problem, RecipeInputError


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one local OpenAI-compatible server.

    `source` is a run directory, a model directory (a full model or a PEFT adapter),
    `builtin:tiny-chat` or a Hugging Face hub id already in the local cache; `adapters`
    adds NAME -> adapter directory (or run directory), all on the same base.
    """

    source: str
    adapters: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # required when host is not loopback; never logged
    max_batch: int = 16  # rows decoded together in one forward pass
    max_queue: int = 64  # requests waiting for a batch slot; beyond: 429
    max_model_len: int | None = None  # default: the model's context length
    max_tokens_limit: int = 512  # a request's max_tokens above this: 400
    drain_timeout: float = 30.0  # seconds in-flight requests get on SIGTERM/SIGINT
    threads: int | None = None  # torch CPU threads in serve(); default: cores - 1
    prefix_cache_mb: int = 256  # KV of prompt blocks kept for reuse; 0: off

    def __repr__(self) -> str:  # the dataclass default would print the key
        key = "None" if self.api_key is None else "'***'"
        return (
            f"ServeConfig(source={self.source!r}, adapters={self.adapters!r}, host={self.host!r}, "
            f"port={self.port}, api_key={key}, max_batch={self.max_batch}, "
            f"max_queue={self.max_queue}, max_model_len={self.max_model_len}, "
            f"max_tokens_limit={self.max_tokens_limit}, drain_timeout={self.drain_timeout}, "
            f"threads={self.threads}, prefix_cache_mb={self.prefix_cache_mb})"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_settings(config: ServeConfig) -> None:
    """Every problem with the numbers and the network settings, all at once."""
    problems: list[Problem] = []

    def bad(field_name: str, message: str) -> None:
        problems.append(Problem(message, file="command line", field=field_name))

    if not is_loopback(config.host) and not config.api_key:
        bad(
            "host",
            f"serving on {config.host!r} (not loopback) needs an API key: anyone who can "
            "reach the port could use the model; set api_key (or bind to 127.0.0.1)",
        )
    if config.api_key is not None and not config.api_key.strip():
        bad("api_key", "is empty; give a non-empty key or none")
    if not 0 <= config.port <= 65535:
        bad("port", f"got {config.port}; expected 0..65535 (0 picks a free port)")
    for name, value, low in (
        ("max_batch", config.max_batch, 1),
        ("max_queue", config.max_queue, 0),
        ("max_tokens_limit", config.max_tokens_limit, 1),
        ("prefix_cache_mb", config.prefix_cache_mb, 0),
    ):
        if value < low:
            bad(name, f"got {value}; expected an integer >= {low}")
    if config.max_model_len is not None and config.max_model_len < 2:
        bad("max_model_len", f"got {config.max_model_len}; expected an integer >= 2")
    if config.threads is not None and config.threads < 1:
        bad("threads", f"got {config.threads}; expected an integer >= 1")
    if config.drain_timeout < 0:
        bad("drain_timeout", f"got {config.drain_timeout}; expected seconds >= 0")
    if problems:
        raise RecipeInputError(problems)


def cpu_threads(asked: int | None) -> int:
    """Torch intra-op threads for serving on CPU: one core is left to the HTTP event loop
    (tokenizing, JSON, SSE). OpenMP threads that share a core with it, or with anything
    else, wait on each other at every op; a decode step of a small model is then many
    times slower than on fewer threads (measured: benchmarks/README.md)."""
    if asked is not None:
        return asked
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of `host` (one port; 0 picks a free one), opened
    before the model loads: a port in use or a host that does not resolve is a one-line
    RecipeInputError at once, and nobody can take the port while the model loads.
    Connections made meanwhile wait in the backlog until the server starts."""
    address = host.strip("[]")  # "[::1]" as in a URL
    try:
        infos = socket.getaddrinfo(
            address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RecipeInputError(
            Problem(f"cannot resolve host {host!r}: {reason}", file="command line", field="--host")
        ) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _name, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # one free port for every address
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            sock.listen(2048)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise RecipeInputError(_bind_problem(host, port, exc)) from None
    return sockets


def _bind_problem(host: str, port: int, exc: OSError) -> Problem:
    if exc.errno == errno.EADDRINUSE:
        return Problem(
            f"port {port} on {host} is in use",
            file="command line",
            field="--port",
            hint="stop what listens there, or pick another port",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return Problem(
            f"{host} is not an address of this machine", file="command line", field="--host"
        )
    if exc.errno == errno.EACCES:
        return Problem(
            f"port {port} on {host}: permission denied (ports below 1024 need privileges)",
            file="command line",
            field="--port",
        )
    return Problem(
        f"cannot listen on {host} port {port}: {exc.strerror or exc}",
        file="command line",
        field="--host",
    )
