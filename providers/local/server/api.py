"""The HTTP side: an OpenAI-compatible FastAPI app in front of the engine.

Routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (both also as
server-sent events), GET /health, GET /metrics. /health and /metrics need no key (load
balancers and Prometheus scrapers probe them; they reveal model names and counts only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from providers.local.server import schemas
from providers.local.server.config import ServeConfig
from providers.local.server.errors import APIError, error_body, json_response
from providers.local.server.gate import Gate, ServingState
from providers.local.server.handles import Delta, Failed, Finished, Handle, SamplingParams
from providers.local.server.metrics import ServerMetrics
from providers.local.server.models import LoadedModels, ServedModel
from providers.local.server.prompts import char_budget, encode_chat, encode_prompt, sampling

log = logging.getLogger("recipe.serve")

Counts = tuple[int, int] | None  # (prompt, completion) tokens for a usage chunk
DISCONNECT_POLL_S = 0.25
INLINE_TOKENIZE_CHARS = 8192  # prompts up to this size are tokenized on the event loop


class ClientGone(Exception):
    """The client closed the connection while its request was being generated."""


# -- helpers ------------------------------------------------------------------------------


async def next_event(handle: Handle, request: Request) -> Any:
    """The engine's next event for this request; ClientGone if the client left meanwhile."""
    if not handle.events.empty():
        return handle.events.get_nowait()
    getter = asyncio.ensure_future(handle.events.get())
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_S)
            if done:
                return getter.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        getter.cancel()


async def tokenize(size: int, encode: Callable[..., list[int]], *args: Any) -> list[int]:
    """encode(*args) off the event loop when the prompt is long: tokenizing a long one
    takes seconds (the fast tokenizers release the GIL meanwhile), and /health and every
    stream must not wait for it. A short one is tokenized here: it takes well under
    2 ms, less than the thread hop costs a loaded server (measured: benchmarks/)."""
    if size <= INLINE_TOKENIZE_CHARS:
        return encode(*args)
    return await asyncio.to_thread(encode, *args)


def sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _generate(
    request: Request,
    state: ServingState,
    served: ServedModel,
    prompt_ids: list[int],
    params: SamplingParams,
    stream: bool,
    render: Callable[[Handle], AsyncIterator[str]],
    finish: Callable[[Finished], dict[str, Any]],
) -> Response:
    handle = Handle(served, prompt_ids, params, stream, asyncio.get_running_loop())
    state.submit(handle)
    if stream:
        return StreamingResponse(
            _guarded(render(handle), handle, state),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    try:
        while True:
            event = await next_event(handle, request)
            if isinstance(event, Finished):
                return json_response(finish(event))
            if isinstance(event, Failed):
                raise APIError(500, event.message)
    except ClientGone:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    finally:
        if not handle.done:
            state.engine.cancel(handle)


async def _guarded(
    chunks: AsyncIterator[str], handle: Handle, state: ServingState
) -> AsyncIterator[str]:
    """A stream whose request is cancelled in the engine however it ends (a client gone,
    a failed send, a cancelled task)."""
    try:
        async for chunk in chunks:
            yield chunk
    except ClientGone:
        return
    finally:
        if not handle.done:
            state.engine.cancel(handle)


def _stream_error(message: str) -> str:
    # vLLM's convention: an error after the stream started is one data event.
    return sse(error_body(message, "server_error")) + "data: [DONE]\n\n"


# -- the app -------------------------------------------------------------------------------


def create_app(loaded: LoadedModels, config: ServeConfig) -> FastAPI:
    metrics = ServerMetrics()
    for name in loaded.served:
        metrics.register_model(name)
    state = ServingState(loaded, config, metrics)
    context = loaded.max_model_len
    budgets: dict[int, int] = {}  # per tokenizer: adapters usually share the base's
    for served_model in loaded.served.values():
        key = id(served_model.tokenizer)
        if key not in budgets:
            budgets[key] = char_budget(served_model.tokenizer, context)

    def budget(served: ServedModel) -> int:
        return budgets[id(served.tokenizer)]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.engine.start()
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await state.drain(config.drain_timeout)
            await asyncio.to_thread(state.engine.stop, 10.0)

    app = FastAPI(
        title="recipe serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.serving = state
    app.add_middleware(Gate, state=state)
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> Response:
        if state.ready and not state.draining and state.engine.running:
            return json_response({"status": "ok"})
        status = "draining" if state.draining else "starting"
        return json_response({"status": status}, 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models() -> Response:
        cards = [
            schemas.model_card(m.id, m.root, m.parent, loaded.max_model_len, state.created)
            for m in loaded.served.values()
        ]
        return json_response({"object": "list", "data": cards})

    @app.post("/v1/chat/completions")
    async def chat(body: schemas.ChatCompletionRequest, request: Request) -> Response:
        state.check_accepting()
        served = state.model(body.model)
        request.state.model = served.id
        size = sum(len(schemas.message_text(m)) for m in body.messages)
        prompt_ids = await tokenize(
            size, encode_chat, served, body.messages, context, budget(served)
        )
        params = sampling(body, len(prompt_ids), state, config.max_tokens_limit)
        rid, created = schemas.new_id("chatcmpl"), int(time.time())
        usage_asked = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(
            delta: dict[str, Any] | None, reason: str | None = None, counts: Counts = None
        ) -> str:
            return sse(
                schemas.chat_chunk(rid, served.id, created, delta, reason, usage_asked, counts)
            )

        async def render(handle: Handle) -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                event = await next_event(handle, request)
                if isinstance(event, Delta):
                    yield chunk({"content": event.text})
                elif isinstance(event, Finished):
                    if event.text:
                        yield chunk({"content": event.text})
                    yield chunk({}, event.finish_reason)
                    if usage_asked:
                        counts = (event.prompt_tokens, event.completion_tokens)
                        yield chunk(None, counts=counts)
                    yield "data: [DONE]\n\n"
                    return
                else:
                    yield _stream_error(event.message)
                    return

        def finish(event: Finished) -> dict[str, Any]:
            return schemas.chat_completion(
                rid,
                served.id,
                event.text,
                event.finish_reason,
                event.prompt_tokens,
                event.completion_tokens,
            )

        return await _generate(
            request, state, served, prompt_ids, params, bool(body.stream), render, finish
        )

    @app.post("/v1/completions")
    async def completions(body: schemas.CompletionRequest, request: Request) -> Response:
        state.check_accepting()
        served = state.model(body.model)
        request.state.model = served.id
        prompt_ids = await tokenize(
            len(body.prompt), encode_prompt, served, body.prompt, context, budget(served)
        )
        # OpenAI's default max_tokens for legacy completions is 16.
        params = sampling(body, len(prompt_ids), state, min(16, config.max_tokens_limit))
        rid, created = schemas.new_id("cmpl"), int(time.time())
        usage_asked = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(text: str | None, reason: str | None = None, counts: Counts = None) -> str:
            return sse(
                schemas.text_completion(rid, served.id, created, text, reason, usage_asked, counts)
            )

        async def render(handle: Handle) -> AsyncIterator[str]:
            while True:
                event = await next_event(handle, request)
                if isinstance(event, Delta):
                    yield chunk(event.text)
                elif isinstance(event, Finished):
                    yield chunk(event.text, event.finish_reason)
                    if usage_asked:
                        yield chunk(None, counts=(event.prompt_tokens, event.completion_tokens))
                    yield "data: [DONE]\n\n"
                    return
                else:
                    yield _stream_error(event.message)
                    return

        def finish(event: Finished) -> dict[str, Any]:
            body_out = schemas.text_completion(
                rid, served.id, created, event.text, event.finish_reason, True
            )
            body_out["usage"] = schemas.usage(event.prompt_tokens, event.completion_tokens)
            return body_out

        return await _generate(
            request, state, served, prompt_ids, params, bool(body.stream), render, finish
        )

    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

    async def invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            message, loc = "the body is not valid JSON", []
        else:
            where = ".".join(loc) or "body"
            message = f"invalid request: {where}: {first.get('msg', 'invalid')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problem(s))"
        return APIError(400, message, param=".".join(loc) or None, code="invalid_value").response()

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = {404: "no such route", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        return APIError(exc.status_code, message, headers=exc.headers).response()

    async def crashed(request: Request, exc: Exception) -> Response:
        # The traceback goes to the server log, never to the client.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return APIError(500, "internal server error; see the server log").response()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        APIError: api_error,
        RequestValidationError: invalid,
        StarletteHTTPException: http_error,
        Exception: crashed,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
