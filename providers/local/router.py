"""A weighted router in front of local endpoints: live traffic split between a stable and
a candidate deployment, with per-deployment numbers a release reads to decide.

Why a small router of our own rather than an existing proxy: envoy, nginx or HAProxy are
not pip packages, so they would be one more thing to install beside `recipe serve`; this
needs nothing beyond the serve extra (FastAPI, uvicorn, httpx, prometheus_client) and runs
wherever `recipe serve` runs. The two things a release needs - setting weights and reading
each deployment's own error rate and latency percentiles - are one tiny JSON API here,
instead of an admin protocol plus a metrics pipeline to query.

    python -m providers.local.router --port P --state FILE [--host 127.0.0.1]

HTTP surface:
    /v1/*                   forwarded (method, path, query, body, headers minus hop-by-hop
                            and Host) to one upstream picked by weight; the response
                            streams back as it comes (SSE included) with the header
                            `x-recipe-deployment: NAME`. The same request header forces
                            that upstream (a release probes the candidate at 0% this way,
                            like Azure's azureml-model-deployment header); an unknown
                            name is a 404. Unreachable upstream: 502; timeout: 504.
    GET /health             200 when an upstream with weight > 0 answers its /health
                            (cached HEALTH_CACHE_S), else 503
    GET /metrics            Prometheus: recipe_router_requests_total{deployment,status},
                            recipe_router_request_duration_seconds{deployment},
                            recipe_router_weight{deployment}
    GET /router/stats?deployment=NAME[&since=UNIX_TS][&include_probes=true]
                            {deployment, requests, errors, client_errors, p50_ms, p95_ms,
                             p99_ms, window_start, window_end}
    GET /router/state       {"upstreams": {name: url}, "weights": {name: percent}}
    PUT /router/state       full replacement (loopback clients only, else 403)
    PUT /router/weights     {name: percent}; names left out get 0 (loopback only)

State lives in a JSON file written atomically on every change and read at start, so a
restarted router routes as before. Weights are integers summing to 100.

Stats count requests as they complete (timestamp = completion), in a bounded ring per
deployment. `errors` are status >= 500 and connection failures (502/504 from the router);
4xx are `client_errors` (a client that hung up mid-response is recorded as 499, nginx's
"client closed request"). Latency runs from the request's arrival to the last byte sent.
Requests forced with the header are probes: left out of the stats unless
include_probes=true (a golden set sent to the candidate must not count as canary traffic),
but counted in /metrics, which shows everything the router served.

FastAPI, httpx and prometheus_client are imported inside build_app: the release code
imports RouterClient (urllib only) and must stay as light as the rest of the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import logging
import math
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from providers.local import runtime as rt

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

log = logging.getLogger("recipe.router")

DEPLOYMENT_HEADER = "x-recipe-deployment"
HEALTH_CACHE_S = 3.0  # a load balancer polling /health must not turn into a probe storm
HEALTH_PROBE_TIMEOUT_S = 2.0
RING_SIZE = 10_000  # samples kept per deployment: hours of a canary at a few requests/s
DRAIN_TIMEOUT_S = 30  # SIGTERM: how long uvicorn waits for streams in flight
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # safe in a header and a label
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Host names the router, not the upstream (httpx sets the right one); the length is
# recomputed by httpx from the body; our own header is the router's business only.
DROP_REQUEST = HOP_BY_HOP | {"host", "content-length", DEPLOYMENT_HEADER}
# The body is re-chunked on the way back, and uvicorn adds its own date and server.
DROP_RESPONSE = HOP_BY_HOP | {"content-length", "date", "server", DEPLOYMENT_HEADER}


# -- state ----------------------------------------------------------------------------------


class StateError(ValueError):
    """Invalid upstreams or weights; the message lists every problem at once."""


@dataclass(frozen=True)
class RouterState:
    upstreams: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"upstreams": dict(self.upstreams), "weights": dict(self.weights)}


def parse_weights(data: Any, upstreams: Mapping[str, str]) -> dict[str, int]:
    """{name: percent} for known upstreams, integers summing to 100; names left out get 0
    (so {"candidate": 100} is a full cut-over without naming every other deployment)."""
    if not isinstance(data, dict):
        raise StateError('weights must be an object {"deployment": percent}')
    problems = []
    for name, value in data.items():
        if name not in upstreams:
            known = ", ".join(sorted(upstreams)) or "none"
            problems.append(f"weights: unknown deployment {name!r} (upstreams: {known})")
        # bool is an int subclass: `true` is not a percentage.
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            problems.append(f"weights.{name}: expected an integer 0-100, got {value!r}")
    if not problems:
        total = sum(data.values())
        if total != 100:
            problems.append(f"weights must sum to 100, got {total}")
    if problems:
        raise StateError("; ".join(problems))
    return {name: int(data.get(name, 0)) for name in upstreams}


def parse_state(data: Any) -> RouterState:
    """A full state {"upstreams": {name: url}, "weights": {name: percent}}."""
    if not isinstance(data, dict):
        raise StateError('the state must be an object {"upstreams": ..., "weights": ...}')
    problems = [f"unknown key {key!r}" for key in data if key not in ("upstreams", "weights")]
    upstreams = data.get("upstreams")
    if not isinstance(upstreams, dict) or not upstreams:
        problems.append('upstreams: expected a non-empty object {"deployment": "http://..."}')
        upstreams = {}
    for name, url in upstreams.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems.append(
                f"upstreams: bad deployment name {name!r} (letters, digits, . _ : -; 128 at most)"
            )
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append(f"upstreams.{name}: expected an http(s) URL, got {url!r}")
    weights: dict[str, int] = {}
    try:
        weights = parse_weights(data.get("weights"), upstreams)
    except StateError as exc:
        problems.append(str(exc))
    if problems:
        raise StateError("; ".join(problems))
    return RouterState({k: v.rstrip("/") for k, v in upstreams.items()}, weights)


def load_state(path: Path) -> RouterState:
    """The saved state; an empty one (no traffic routed) when the file does not exist yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return RouterState()
    try:
        return parse_state(json.loads(text))
    except (json.JSONDecodeError, StateError) as exc:
        raise StateError(f"{path}: {exc}") from None


def save_state(path: Path, state: RouterState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rt.write_json_atomic(path, state.to_json())  # tempfile + os.replace: never half-written


# -- stats ----------------------------------------------------------------------------------


class Sample(NamedTuple):
    timestamp: float  # completion, UNIX seconds
    status: int
    latency_ms: float
    forced: bool  # a probe sent with the deployment header, not live traffic


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (an observed value, never an interpolation)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


class Samples:
    """A bounded ring of completed requests per deployment."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._size = size
        self._rings: dict[str, collections.deque[Sample]] = {}
        self._overflowed: set[str] = set()

    def add(self, deployment: str, sample: Sample) -> None:
        ring = self._rings.setdefault(deployment, collections.deque(maxlen=self._size))
        if len(ring) == self._size:
            self._overflowed.add(deployment)
        ring.append(sample)

    def __contains__(self, deployment: str) -> bool:
        return deployment in self._rings

    def summary(
        self,
        deployment: str,
        since: float | None = None,
        include_probes: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        ring = self._rings.get(deployment, ())
        now = time.time() if now is None else now
        start = since if since is not None else (ring[0].timestamp if ring else now)
        if deployment in self._overflowed and ring and ring[0].timestamp > start:
            # Older samples were dropped: say which window the numbers really cover.
            start = ring[0].timestamp
        chosen = [s for s in ring if s.timestamp >= start and (include_probes or not s.forced)]
        latencies = sorted(s.latency_ms for s in chosen)
        return {
            "deployment": deployment,
            "requests": len(chosen),
            "errors": sum(1 for s in chosen if s.status >= 500),
            "client_errors": sum(1 for s in chosen if 400 <= s.status < 500),
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99),
            "window_start": start,
            "window_end": now,
        }


# -- request helpers --------------------------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """Whether a peer address (request.client.host) is this machine."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False  # not an address ("testclient", a unix socket): not trusted
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> set[str]:
    """Header names a Connection header marks as hop-by-hop for this hop."""
    named: set[str] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named |= {v.strip().lower() for v in value.decode("latin-1").split(",")}
    return named


def forward_headers(
    raw: Iterable[tuple[bytes, bytes]], drop: frozenset[str]
) -> list[tuple[bytes, bytes]]:
    """Headers minus `drop`, as raw bytes (a non-ASCII value passes as it came) in a list
    (repeated ones such as set-cookie stay repeated); names lower-cased, as HTTP/2 wants."""
    raw = list(raw)
    skip = drop | _connection_listed(raw)
    return [(key.lower(), value) for key, value in raw if key.decode("latin-1").lower() not in skip]


# -- the app --------------------------------------------------------------------------------


def build_app(
    state_file: Path,
    seed: int | None = None,
    timeout_s: float = 120,
    ring_size: int = RING_SIZE,
) -> FastAPI:
    """The router over the state saved in `state_file` (StateError if it is invalid)."""
    import httpx
    from fastapi import FastAPI
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response, StreamingResponse
    from starlette.types import Receive, Scope, Send

    from providers.local.server.errors import error_body, json_response

    state_file = Path(state_file)
    # The live state in a one-element list: the closures below see replacements.
    holder = [load_state(state_file)]
    samples = Samples(ring_size)
    rng = random.Random(seed)  # seeded in tests: the same picks on every run
    lock = asyncio.Lock()  # one state change (file + memory) at a time
    health_cache: dict[str, Any] = {}  # {"at": monotonic, "ok": bool, "upstreams": {...}}

    registry = CollectorRegistry(auto_describe=True)  # own registry: several apps per process
    requests_total = Counter(
        "recipe_router_requests",
        "Requests completed by the router, by deployment and HTTP status",
        ["deployment", "status"],
        registry=registry,
    )
    duration = Histogram(
        "recipe_router_request_duration_seconds",
        "Time from the request's arrival to the last byte of the response",
        ["deployment"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    weight_gauge = Gauge(
        "recipe_router_weight",
        "Percent of live traffic routed to the deployment",
        ["deployment"],
        registry=registry,
    )

    def show_weights(state: RouterState) -> None:
        weight_gauge.clear()  # a deployment removed from the state leaves the gauge
        for name, percent in state.weights.items():
            weight_gauge.labels(name).set(percent)

    show_weights(holder[0])

    client = httpx.AsyncClient(
        # Read timeout is per chunk: a long stream is fine while tokens keep coming.
        timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        trust_env=False,  # an HTTP(S)_PROXY in the environment must not catch loopback
        follow_redirects=False,  # a redirect goes back to the client unchanged
    )
    # httpx's default Accept, Accept-Encoding, Connection and User-Agent would be added
    # to what the client sent (an upstream could then gzip a body the client cannot read).
    for key in list(client.headers):
        del client.headers[key]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="recipe router", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    def error(
        status: int, message: str, code: str | None = None, deployment: str | None = None
    ) -> Response:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        headers = {DEPLOYMENT_HEADER: deployment} if deployment else None
        return json_response(error_body(message, kind, None, code), status, headers)

    def record(name: str, status: int, started: float, forced: bool) -> None:
        elapsed = time.perf_counter() - started
        samples.add(name, Sample(time.time(), status, elapsed * 1000, forced))
        requests_total.labels(name, str(status)).inc()
        duration.labels(name).observe(elapsed)

    def pick(state: RouterState) -> str | None:
        names = [name for name, percent in state.weights.items() if percent > 0]
        if not names:
            return None
        return rng.choices(names, weights=[state.weights[n] for n in names])[0]

    class Relay(StreamingResponse):
        """The upstream's response, passed on chunk by chunk as it arrives; records the
        outcome once, however the relay ends (finished, upstream failed, client gone)."""

        def __init__(self, upstream: httpx.Response, name: str, forced: bool, started: float):
            super().__init__(self._chunks(), status_code=upstream.status_code)
            self.raw_headers = forward_headers(upstream.headers.raw, DROP_RESPONSE)
            self.raw_headers.append((DEPLOYMENT_HEADER.encode(), name.encode()))
            self.upstream, self.name, self.forced, self.started = upstream, name, forced, started
            self.outcome: int | None = None  # set when the body ended, well or not

        async def _chunks(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self.upstream.aiter_raw():  # raw: bytes pass unchanged
                    yield chunk
            except httpx.TimeoutException:
                self.outcome = 504
            except httpx.HTTPError:
                self.outcome = 502
            else:
                self.outcome = self.upstream.status_code
                return
            log.warning("deployment %s failed mid-response (%d)", self.name, self.outcome)
            if self.upstream.headers.get("content-type", "").startswith("text/event-stream"):
                # The convention `recipe serve` and vLLM follow: an error after the
                # stream started is one data event, then the end of the stream.
                message = f"deployment {self.name} failed during the stream"
                event = json.dumps(error_body(message, "server_error"), ensure_ascii=True)
                yield f"data: {event}\n\ndata: [DONE]\n\n".encode()
            else:
                raise _Truncated()  # the client must see a cut body, not a complete one

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await super().__call__(scope, receive, send)
            except _Truncated:
                pass  # uvicorn closes the connection: the response was never completed
            except ClientDisconnect:
                pass  # ASGI 2.4 servers report a client gone this way; recorded below
            finally:
                with _shielded():
                    await self.upstream.aclose()  # an abandoned stream frees its upstream
                # No outcome: the body never ended, so the client went away first.
                record(self.name, self.outcome or 499, self.started, self.forced)

    async def forward(request: Request) -> Response:
        started = time.perf_counter()
        state = current_state()
        wanted = request.headers.get(DEPLOYMENT_HEADER)
        forced = wanted is not None
        if wanted is not None:
            name = wanted.strip()
            if name not in state.upstreams:
                known = ", ".join(sorted(state.upstreams)) or "none"
                return error(
                    404,
                    f"unknown deployment {wanted!r} in the {DEPLOYMENT_HEADER} header "
                    f"(deployments: {known})",
                    "deployment_not_found",
                )
        else:
            picked = pick(state)
            if picked is None:
                return error(
                    503,
                    "no deployment has traffic weight; set weights with PUT /router/weights",
                    "no_upstream",
                )
            name = picked
        base = state.upstreams[name]
        url = base + request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        if request.url.query:
            url += "?" + request.url.query
        outgoing = client.build_request(
            request.method,
            url,
            headers=forward_headers(request.headers.raw, DROP_REQUEST),
            content=await request.body(),
        )
        try:
            upstream = await client.send(outgoing, stream=True)
        except httpx.TimeoutException:
            record(name, 504, started, forced)
            return error(504, f"deployment {name} did not answer in time", "upstream_timeout", name)
        except httpx.HTTPError as exc:
            record(name, 502, started, forced)
            return error(
                502,
                f"cannot reach deployment {name} at {base}: {exc}",
                "upstream_unreachable",
                name,
            )
        return Relay(upstream, name, forced, started)

    def current_state() -> RouterState:
        return holder[0]

    async def replace(state: RouterState) -> Response:
        async with lock:
            save_state(state_file, state)  # the file first: memory never runs ahead of it
            holder[0] = state
            show_weights(state)
            health_cache.clear()
        log.info("routing now %s", state.weights)
        return json_response(state.to_json())

    async def admin_body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            raise StateError("the body must be JSON") from None

    def forbidden(request: Request) -> Response | None:
        host = request.client.host if request.client else None
        if is_loopback(host):
            return None
        return error(403, f"the router's admin API answers loopback clients only, not {host}")

    async def get_state(_request: Request) -> Response:
        return json_response(current_state().to_json())

    async def put_state(request: Request) -> Response:
        if (denied := forbidden(request)) is not None:
            return denied
        try:
            state = parse_state(await admin_body(request))
        except StateError as exc:
            return error(400, str(exc), "invalid_state")
        return await replace(state)

    async def put_weights(request: Request) -> Response:
        if (denied := forbidden(request)) is not None:
            return denied
        state = current_state()
        try:
            weights = parse_weights(await admin_body(request), state.upstreams)
        except StateError as exc:
            return error(400, str(exc), "invalid_weights")
        return await replace(RouterState(dict(state.upstreams), weights))

    async def get_stats(request: Request) -> Response:
        query = request.query_params
        name = query.get("deployment")
        if not name:
            return error(400, "the deployment query parameter is required", "missing_deployment")
        since: float | None = None
        if query.get("since"):
            try:
                since = float(query["since"])
            except ValueError:
                return error(400, f"since: expected UNIX seconds, got {query['since']!r}")
        if name not in current_state().upstreams and name not in samples:
            return error(404, f"unknown deployment {name!r}", "deployment_not_found")
        probes = query.get("include_probes", "false").lower() in ("1", "true", "yes")
        return json_response(samples.summary(name, since, probes))

    async def health(_request: Request) -> Response:
        cached = health_cache
        if not cached or time.monotonic() - cached["at"] > HEALTH_CACHE_S:
            state = current_state()
            live = [name for name, percent in state.weights.items() if percent > 0]
            answers = await asyncio.gather(*(probe(state.upstreams[n]) for n in live))
            cached.update(
                at=time.monotonic(),
                ok=any(answers),
                upstreams={n: "ok" if a else "down" for n, a in zip(live, answers, strict=True)},
            )
        body = {"status": "ok" if cached["ok"] else "unavailable", "upstreams": cached["upstreams"]}
        return json_response(body, 200 if cached["ok"] else 503)

    async def probe(base: str) -> bool:
        try:
            answer = await client.get(f"{base}/health", timeout=HEALTH_PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths and methods answer in the same OpenAI shape as everything else.
        return error(exc.status_code, str(exc.detail))

    # Plain Starlette routes (the endpoint gets the Request): no FastAPI parameter
    # inspection, which could not resolve annotations imported inside this function.
    for path, endpoint, methods in (
        ("/v1/{path:path}", forward, ["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ("/router/state", get_state, ["GET"]),
        ("/router/state", put_state, ["PUT"]),
        ("/router/weights", put_weights, ["PUT"]),
        ("/router/stats", get_stats, ["GET"]),
        ("/health", health, ["GET"]),
        ("/metrics", metrics, ["GET"]),
    ):
        app.add_route(path, endpoint, methods=methods)
    app.state.router = {"samples": samples, "state": current_state}
    return app


class _Truncated(Exception):
    """The upstream failed in the middle of a non-SSE body: abort the client's response."""


def _shielded() -> Any:
    """A cancel scope that lets cleanup finish inside a cancelled task (client gone)."""
    import anyio

    return anyio.CancelScope(shield=True)


# -- the client the release uses ------------------------------------------------------------


class RouterError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # None: the router could not be reached


class RouterClient:
    """The router's admin and stats API over urllib (no dependency beyond the stdlib)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        # No proxies: the router is on loopback, and HTTP_PROXY must not intercept it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/router/state")

    def set_state(self, upstreams: Mapping[str, str], weights: Mapping[str, int]) -> dict[str, Any]:
        body = {"upstreams": dict(upstreams), "weights": dict(weights)}
        return self._call("PUT", "/router/state", body)

    def set_weights(self, weights: Mapping[str, int]) -> dict[str, Any]:
        return self._call("PUT", "/router/weights", dict(weights))

    def stats(
        self, deployment: str, since: float | None = None, include_probes: bool = False
    ) -> dict[str, Any]:
        query = {"deployment": deployment, "include_probes": str(include_probes).lower()}
        if since is not None:
            query["since"] = repr(float(since))
        return self._call("GET", "/router/stats?" + urllib.parse.urlencode(query))

    def reachable(self) -> bool:
        """The router answers (whatever its upstreams do)."""
        try:
            self._call("GET", "/router/state")
        except RouterError:
            return False
        return True

    def healthy(self) -> bool:
        try:
            self._call("GET", "/health")
        except RouterError:
            return False
        return True

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = str(json.loads(raw)["error"]["message"])
            except (ValueError, KeyError, TypeError):
                message = raw[:200].decode("utf-8", errors="replace")
            raise RouterError(
                f"the router answered {exc.code} to {method} {path}: {message}", exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RouterError(f"cannot reach the router at {self.url}: {reason}") from None


# -- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m providers.local.router",
        description="Route /v1/* between local deployments by weight.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="the JSON state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=None, help="repeatable picks (tests)")
    parser.add_argument("--timeout", type=float, default=120.0, help="upstream timeout, s")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        app = build_app(args.state, seed=args.seed, timeout_s=args.timeout)
    except StateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    # uvicorn's own SIGTERM handling: stop accepting, let streams in flight finish.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
        proxy_headers=False,  # the router is the edge: request.client is the real peer
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
