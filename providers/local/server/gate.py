"""What the routes share (ServingState), and the Gate in front of every route: the API
key, per-request metrics and the in-flight count (pure ASGI: BaseHTTPMiddleware would
break the disconnect detection of streaming responses)."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from providers.local.server.config import ServeConfig
from providers.local.server.engine import Engine
from providers.local.server.errors import APIError, quote
from providers.local.server.handles import Handle, NotAccepting, QueueFull
from providers.local.server.metrics import ServerMetrics
from providers.local.server.models import LoadedModels, ServedModel

ROUTES = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/health", "/metrics")
GENERATION = ("/v1/chat/completions", "/v1/completions")


class ServingState:
    """What the routes share: the engine, the models, the settings and the drain flag."""

    def __init__(self, loaded: LoadedModels, config: ServeConfig, metrics: ServerMetrics):
        self.loaded = loaded
        self.config = config
        self.metrics = metrics
        self.engine = Engine(
            loaded,
            config.max_batch,
            config.max_queue,
            metrics,
            prefix_cache_bytes=config.prefix_cache_mb * 2**20,
        )
        self.ready = False
        self.draining = False
        self.in_flight = 0  # generation requests between arrival and their last byte
        self.created = int(time.time())

    def model(self, name: str) -> ServedModel:
        served = self.loaded.served.get(name)
        if served is None:
            raise APIError(
                404,
                f"The model {quote(name)} does not exist; available: "
                + ", ".join(self.loaded.served),
                param="model",
                code="model_not_found",
            )
        return served

    def check_accepting(self) -> None:
        if self.draining:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        if not self.ready:
            raise APIError(503, "the server is not ready yet", code="not_ready")

    def submit(self, handle: Handle) -> None:
        try:
            self.engine.submit(handle)
        except QueueFull:
            raise APIError(
                429,
                "the server is at capacity (every batch slot and queue place is taken); "
                "retry shortly",
                code="queue_full",
                headers={"retry-after": "1"},
            ) from None
        except NotAccepting:
            raise APIError(503, "the server is shutting down", code="shutting_down") from None

    async def drain(self, timeout: float) -> bool:
        """Refuse new work (503) and wait for in-flight requests; True if they all ended."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.in_flight == 0


class Gate:
    def __init__(self, app: Any, state: ServingState):
        self.app = app
        self.state = state
        key = state.config.api_key
        self.expected = f"Bearer {key}".encode() if key else None

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                return hmac.compare_digest(value, self.expected or b"")
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in ROUTES else "other"
        status = 500
        start = time.perf_counter()

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        generation = route in GENERATION
        if generation:
            self.state.in_flight += 1
        try:
            if self.expected and path.startswith("/v1/") and not self._authorized(scope):
                error = APIError(
                    401,
                    "Incorrect or missing API key: send Authorization: Bearer <key>",
                    code="invalid_api_key",
                    headers={"www-authenticate": "Bearer"},
                )
                await error.response()(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            if generation:
                self.state.in_flight -= 1
            model = scope.get("state", {}).get("model", "")
            metrics = self.state.metrics
            metrics.requests.labels(route=route, model=model, status=str(status)).inc()
            metrics.latency.labels(route=route, model=model).observe(time.perf_counter() - start)
