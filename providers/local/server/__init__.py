"""`recipe serve`: a local OpenAI-compatible server for a run, an adapter or a model.

    check(config)      -> ResolvedModels   what would be served; no torch, RecipeInputError
    build_app(config)  -> FastAPI          loads the models; run it with uvicorn
    serve(config, on_ready=None)           blocking; graceful drain on SIGTERM/SIGINT

Served model ids: the base (e.g. "builtin:tiny-chat" or a hub id) and each adapter by
name; a run directory's adapter is named after its recipe (models.py has the rules: a
run's adapter/ is preferred to its merged/, so the base stays servable beside it).

HTTP surface (api.py): GET /v1/models (vLLM-style cards: adapters carry `parent` and
`root`), POST /v1/chat/completions and /v1/completions (also as server-sent events),
GET /health (200 ready, 503 starting or draining), GET /metrics (Prometheus). Errors are
OpenAI-shaped {"error": {message, type, param, code}}: 400 bad or malformed body (400,
not FastAPI's 422, like OpenAI and vLLM), 400 context or max_tokens over the limits,
401 wrong or missing key, 404 unknown model (the message lists the served ones), 413
a body over max(4 MiB, 64 bytes per context token) (gate.py), 429
queue full (Retry-After: 1), 503 not ready or draining, 500 never with a traceback.
With an api_key, every /v1/* route needs `Authorization: Bearer KEY` (any case); /health and
/metrics stay open for probes and scrapers. Extensions (vLLM's names): `ignore_eos`,
`min_tokens`.

Engine (engine.py): one thread owns the model; continuous batching (requests join the
running batch between decode steps), several adapters in one batch, a per-request
torch.Generator for seeds, automatic prefix caching of prompt blocks (prefixcache.py).

Heavy imports (torch, transformers, peft, fastapi, uvicorn) happen inside the functions,
so `check()` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from providers.local.server.config import ServeConfig, check_settings, cpu_threads, listen
from providers.local.server.models import AdapterSpec, BaseSpec, ResolvedModels, resolve

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "AdapterSpec",
    "BaseSpec",
    "ResolvedModels",
    "ServeConfig",
    "build_app",
    "check",
    "serve",
]


def check(config: ServeConfig) -> ResolvedModels:
    """Settings, source and adapters checked without loading a model (RecipeInputError)."""
    check_settings(config)
    return resolve(config.source, dict(config.adapters))


def build_app(config: ServeConfig) -> FastAPI:
    """The FastAPI app with the models loaded; the engine starts with its lifespan."""
    from providers.local.server.api import create_app
    from providers.local.server.models import load

    resolved = check(config)
    return create_app(load(resolved, config.max_model_len), config)


def serve(config: ServeConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain: new requests get 503 while those in flight
    finish (up to config.drain_timeout). on_ready gets the base URL once listening (the
    real port when config.port is 0).

    The port is bound before the model loads (and before torch is imported): a port in
    use or a host that does not resolve is a RecipeInputError at once."""
    check_settings(config)
    sockets = listen(config.host, config.port)
    try:
        from providers.local.server.runner import (
            DrainingServer,
            ensure_logging,
            set_threads,
            uvicorn_config,
        )

        ensure_logging()
        # Process-wide, hence here and not in build_app: tests build apps in their own process.
        set_threads(cpu_threads(config.threads))
        app = build_app(config)
        port = sockets[0].getsockname()[1]
        server = DrainingServer(
            uvicorn_config(app, config.host, port, config.drain_timeout),
            app.state.serving,
            config.drain_timeout,
            on_ready,
        )
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
