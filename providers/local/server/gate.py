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

# Request bodies above max(MIN_BODY_LIMIT, BODY_BYTES_PER_TOKEN * max_model_len) get 413
# before they are read: a prompt that fits the context is far smaller (a token is a few
# characters, at most 12 bytes each as JSON escapes; a token id is a few digits), and a
# huge body would otherwise be parsed on the event loop, stalling every other request.
MIN_BODY_LIMIT = 4 * 2**20
BODY_BYTES_PER_TOKEN = 64

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
        self.max_body = body_limit(loaded.max_model_len)

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


def body_limit(max_model_len: int) -> int:
    return max(MIN_BODY_LIMIT, BODY_BYTES_PER_TOKEN * max_model_len)


class Gate:
    def __init__(self, app: Any, state: ServingState):
        self.app = app
        self.state = state
        key = state.config.api_key
        self.key = key.encode() if key else None

    def _authorized(self, scope: dict[str, Any]) -> bool:
        """`Authorization: Bearer KEY`; the scheme is case-insensitive (RFC 7235 §2.1)."""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    token.strip(), self.key or b""
                )
        return False

    def _too_large(self, scope: dict[str, Any]) -> APIError | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return None  # the HTTP server answers a bad length itself
                if declared > self.state.max_body:
                    return self._refusal()
        return None

    def _refusal(self) -> APIError:
        return APIError(
            413,
            f"the request body is larger than this server's limit of {self.state.max_body} "
            "bytes (far more than a prompt that fits the model's context)",
            code="request_too_large",
            headers={"connection": "close"},
        )

    async def _buffered(self, scope: dict[str, Any], receive: Any) -> tuple[Any, bool]:
        """A body without Content-Length (chunked): read it here, up to the limit, and
        replay it to the app. (receive, False) when it is over the limit."""
        if any(name == b"content-length" for name, _ in scope.get("headers", [])):
            return receive, True
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.state.max_body:
                return receive, False
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        return replay, True

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
            error = None
            if self.key and path.startswith("/v1/") and not self._authorized(scope):
                error = APIError(
                    401,
                    "Incorrect or missing API key: send Authorization: Bearer <key>",
                    code="invalid_api_key",
                    headers={"www-authenticate": "Bearer"},
                )
            elif scope.get("method") not in ("GET", "HEAD"):
                error = self._too_large(scope)
                if error is None:
                    receive, fits = await self._buffered(scope, receive)
                    error = None if fits else self._refusal()
            if error is not None:
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
