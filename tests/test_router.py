"""The local router: weighted routing between two real HTTP upstreams, forced probes,
streaming pass-through, error and latency stats, persistence and the admin guard.

Two fake upstreams (small FastAPI apps, configurable status, delay and a held stream)
and the router each run under uvicorn in a thread on a free loopback port; requests go
over real sockets with httpx, urllib (RouterClient) and the official openai client.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import JSONResponse, Response, StreamingResponse

from providers.local.router import (
    DEPLOYMENT_HEADER,
    RouterClient,
    RouterError,
    Sample,
    Samples,
    StateError,
    build_app,
    is_loopback,
    parse_state,
    percentile,
)
from tests.conftest import REPO

HOLD_S = 5.0  # how long a held stream waits for the test before sending the rest anyway
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Served:
    """An ASGI app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # generous: other suites share this machine
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


class Fake:
    """An OpenAI-shaped upstream whose answers the test controls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.status = 200
        self.delays: list[float] = []  # one per request, then 0
        self.healthy = True
        self.hold = False  # stream: wait for `release` after the first chunk
        self.die = False  # stream: drop the connection after the first chunk
        self.release = threading.Event()
        self.last_sent = threading.Event()
        self.hits = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.hits += 1
            delay = self.delays.pop(0) if self.delays else 0.0
            if delay:
                await asyncio.sleep(delay)
            if self.status != 200:
                error = {"message": "boom", "type": "server_error", "param": None, "code": None}
                return JSONResponse({"error": error}, self.status)
            if body.get("stream"):
                return StreamingResponse(self.sse(), media_type="text/event-stream")
            return JSONResponse(completion(self.name, self.name), headers={"x-upstream": self.name})

        @app.api_route("/v1/echo", methods=["GET", "POST", "PUT", "DELETE"])
        async def echo(request: Request) -> Response:
            self.hits += 1
            return JSONResponse(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": request.url.query,
                    "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
                    "body": (await request.body()).decode(),
                }
            )

        @app.get("/health")
        async def health() -> Response:
            return JSONResponse({"status": "ok"}, 200 if self.healthy else 503)

        return app

    async def sse(self) -> AsyncIterator[str]:
        words = ["one", " two", " three"]
        for i, word in enumerate(words):
            if i == len(words) - 1:
                self.last_sent.set()
            yield f"data: {json.dumps(chunk(self.name, word))}\n\n"
            if i == 0 and self.die:
                raise RuntimeError("upstream died mid-stream (on purpose)")
            if i == 0 and self.hold:
                await anyio.to_thread.run_sync(self.release.wait, HOLD_S)
            else:
                await asyncio.sleep(0.02)
        yield "data: [DONE]\n\n"


def completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


def free_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.fakes = {"stable": Fake("stable"), "canary": Fake("canary")}
        self.upstream_servers = {n: Served(f.app()) for n, f in self.fakes.items()}
        self.upstreams = {n: s.url for n, s in self.upstream_servers.items()}
        self.state_file = tmp / "router.json"
        self.router = Served(build_app(self.state_file, seed=7, timeout_s=30))
        self.admin = RouterClient(self.router.url)
        self.http = httpx.Client(base_url=self.router.url, timeout=30, trust_env=False)

    def chat(self, **headers: str) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json=CHAT, headers=headers)

    def stop(self) -> None:
        self.http.close()
        for served in (self.router, *self.upstream_servers.values()):
            served.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    made = Setup(tmp_path_factory.mktemp("router"))
    yield made
    made.stop()


@pytest.fixture
def env(setup: Setup) -> Setup:
    """The shared router back to stable 100 / canary 0, the fakes to their defaults."""
    for fake in setup.fakes.values():
        fake.reset()
    setup.admin.set_state(setup.upstreams, {"stable": 100, "canary": 0})
    return setup


# -- routing --------------------------------------------------------------------------------


def test_weights_100_0_send_everything_to_one(env: Setup) -> None:
    for _ in range(20):
        answer = env.chat()
        assert answer.status_code == 200
        assert answer.headers[DEPLOYMENT_HEADER] == "stable"
        assert answer.json()["choices"][0]["message"]["content"] == "stable"
        assert answer.headers["x-upstream"] == "stable"  # upstream headers come back
    assert (env.fakes["stable"].hits, env.fakes["canary"].hits) == (20, 0)

    env.admin.set_weights({"canary": 100})  # names left out get 0
    assert env.admin.state()["weights"] == {"stable": 0, "canary": 100}
    assert {env.chat().headers[DEPLOYMENT_HEADER] for _ in range(10)} == {"canary"}
    assert env.fakes["stable"].hits == 20


def test_90_10_split_within_statistical_bound(env: Setup) -> None:
    env.admin.set_weights({"stable": 90, "canary": 10})
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda _: env.chat().headers[DEPLOYMENT_HEADER], range(400)))
    canary = names.count("canary")
    # Binomial(400, 0.1): mean 40, sd 6; 20..60 is more than 3 sd either side.
    assert 20 <= canary <= 60, canary
    assert names.count("stable") == 400 - canary
    assert env.fakes["canary"].hits == canary


def test_request_forwarded_unchanged(env: Setup) -> None:
    answer = env.http.put(
        "/v1/echo?a=1&b=two%20words",
        content=b'{"x": 1}',
        headers={
            "x-custom": "kept",
            "content-type": "application/json",
            "connection": "keep-alive, x-hop",  # x-hop: hop-by-hop because listed here
            "x-hop": "1",
        },
    )
    seen = answer.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert (seen["method"], seen["path"], seen["query"]) == ("PUT", "/v1/echo", "a=1&b=two%20words")
    assert seen["body"] == '{"x": 1}'
    assert headers["x-custom"] == "kept"
    assert headers["host"] == env.upstreams["stable"].removeprefix("http://")  # not the router's
    assert "connection" not in headers and "x-hop" not in headers
    assert DEPLOYMENT_HEADER not in headers


def test_forced_header_reaches_the_named_upstream_and_is_not_live(env: Setup) -> None:
    since = time.time()
    for _ in range(3):
        answer = env.chat(**{DEPLOYMENT_HEADER: "canary"})  # canary is at 0%
        assert answer.headers[DEPLOYMENT_HEADER] == "canary"
        assert answer.json()["model"] == "canary"
    assert env.fakes["canary"].hits == 3
    assert env.admin.stats("canary", since)["requests"] == 0
    probes = env.admin.stats("canary", since, include_probes=True)
    assert (probes["requests"], probes["errors"]) == (3, 0)

    unknown = env.chat(**{DEPLOYMENT_HEADER: "nope"})
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "deployment_not_found" and "canary" in error["message"]


def test_admin_paths_are_not_forwarded(env: Setup) -> None:
    env.admin.state()
    env.admin.set_weights({"stable": 100})
    assert env.http.get("/nothing").status_code == 404
    assert env.http.get("/nothing").json()["error"]["type"] == "invalid_request_error"
    assert env.fakes["stable"].hits == env.fakes["canary"].hits == 0


# -- streaming --------------------------------------------------------------------------------


def test_sse_passes_through_chunk_by_chunk(env: Setup) -> None:
    fake = env.fakes["stable"]
    fake.hold = True
    lines = []
    body = {**CHAT, "stream": True}
    with env.http.stream("POST", "/v1/chat/completions", json=body) as answer:
        assert answer.headers[DEPLOYMENT_HEADER] == "stable"
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if not line:
                continue
            if not lines:
                # The first chunk is here while the upstream still holds the last one.
                assert not fake.last_sent.is_set(), "the router buffered the stream"
                fake.release.set()
            lines.append(line)
    assert lines[-1] == "data: [DONE]"
    words = [json.loads(line[6:])["choices"][0]["delta"]["content"] for line in lines[:-1]]
    assert "".join(words) == "one two three"


def test_upstream_dying_mid_stream_ends_with_an_error_event(env: Setup) -> None:
    since = time.time()
    env.fakes["stable"].die = True
    with env.http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
        assert s.status_code == 200  # already sent when the upstream failed
        lines = [line for line in s.iter_lines() if line]
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["content"] == "one"
    assert json.loads(lines[1][6:])["error"]["type"] == "server_error"
    assert lines[-1] == "data: [DONE]"
    stats = env.admin.stats("stable", since)
    assert (stats["requests"], stats["errors"]) == (1, 1)


def test_client_gone_mid_stream_is_499(env: Setup) -> None:
    since = time.time()
    fake = env.fakes["stable"]
    fake.hold = True
    body = {**CHAT, "stream": True}
    with (
        httpx.Client(base_url=env.router.url, timeout=30, trust_env=False) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as s,
    ):
        next(s.iter_lines())  # then hang up with the stream still open
    fake.release.set()
    deadline = time.monotonic() + 20
    while env.admin.stats("stable", since)["requests"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = env.admin.stats("stable", since)
    assert (stats["requests"], stats["errors"], stats["client_errors"]) == (1, 0, 1)


def test_openai_client_through_the_router(env: Setup) -> None:
    client = openai.OpenAI(
        base_url=f"{env.router.url}/v1", api_key="none", max_retries=0, timeout=30
    )
    raw = client.chat.completions.with_raw_response.create(model="m", messages=CHAT["messages"])
    assert raw.headers[DEPLOYMENT_HEADER] == "stable"
    assert raw.parse().choices[0].message.content == "stable"
    stream = client.chat.completions.create(model="m", messages=CHAT["messages"], stream=True)
    text = "".join(part.choices[0].delta.content or "" for part in stream)
    assert text == "one two three"
    forced = openai.OpenAI(
        base_url=f"{env.router.url}/v1",
        api_key="none",
        max_retries=0,
        default_headers={DEPLOYMENT_HEADER: "canary"},
    )
    reply = forced.chat.completions.create(model="m", messages=CHAT["messages"])
    assert reply.choices[0].message.content == "canary"
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(
            base_url=f"{env.router.url}/v1",
            api_key="none",
            max_retries=0,
            default_headers={DEPLOYMENT_HEADER: "missing"},
        ).chat.completions.create(model="m", messages=CHAT["messages"])


# -- errors and latency -----------------------------------------------------------------------


def test_5xx_and_4xx_and_unreachable_in_stats(env: Setup) -> None:
    since = time.time()
    env.admin.set_weights({"canary": 100})
    env.fakes["canary"].status = 500
    assert [env.chat().status_code for _ in range(3)] == [500] * 3  # passed through as is
    env.fakes["canary"].status = 404
    assert env.chat().status_code == 404
    env.fakes["canary"].status = 200
    assert env.chat().status_code == 200
    stats = env.admin.stats("canary", since)
    assert (stats["requests"], stats["errors"], stats["client_errors"]) == (5, 3, 1)
    assert stats["window_start"] == pytest.approx(since)
    assert stats["window_end"] >= since
    assert env.admin.stats("stable", since)["requests"] == 0

    since = time.time()
    env.admin.set_state({**env.upstreams, "gone": free_url()}, {"stable": 50, "gone": 50})
    forced = env.chat(**{DEPLOYMENT_HEADER: "gone"})
    assert forced.status_code == 502
    assert forced.headers[DEPLOYMENT_HEADER] == "gone"
    assert forced.json()["error"]["code"] == "upstream_unreachable"
    env.admin.set_weights({"gone": 100})
    for _ in range(2):
        assert env.chat().status_code == 502
    gone = env.admin.stats("gone", since)
    assert (gone["requests"], gone["errors"]) == (2, 2)
    assert env.admin.stats("gone", since, include_probes=True)["errors"] == 3

    families = {f.name: f for f in text_string_to_metric_families(env.http.get("/metrics").text)}
    counts = {
        (s.labels["deployment"], s.labels["status"]): s.value
        for s in families["recipe_router_requests"].samples
        if s.name.endswith("_total")
    }
    assert counts[("gone", "502")] >= 3 and counts[("canary", "500")] >= 3
    weights = {s.labels["deployment"]: s.value for s in families["recipe_router_weight"].samples}
    assert weights == {"stable": 0, "canary": 0, "gone": 100}
    assert "recipe_router_request_duration_seconds" in families


def test_timeout_is_504(env: Setup, tmp_path: Path) -> None:
    router = Served(build_app(tmp_path / "state.json", timeout_s=0.5))
    try:
        RouterClient(router.url).set_state(env.upstreams, {"stable": 100})
        env.fakes["stable"].delays = [2.0]
        answer = httpx.post(f"{router.url}/v1/chat/completions", json=CHAT, timeout=30)
        assert answer.status_code == 504
        assert answer.json()["error"]["code"] == "upstream_timeout"
        assert RouterClient(router.url).stats("stable")["errors"] == 1
    finally:
        router.stop()


def test_p95_matches_known_latencies(env: Setup) -> None:
    since = time.time()
    env.fakes["stable"].delays = [0.01] * 10 + [0.3] * 10
    for _ in range(20):
        assert env.chat().status_code == 200
    stats = env.admin.stats("stable", since)
    assert stats["requests"] == 20
    # Ten fast and ten slow: the median is a fast one, the 95th and 99th slow ones.
    assert 10 <= stats["p50_ms"] < 300, stats
    assert 300 <= stats["p95_ms"] < 3000, stats
    assert stats["p95_ms"] <= stats["p99_ms"] < 3000, stats


def test_stream_latency_runs_to_the_last_byte(env: Setup) -> None:
    since = time.time()
    fake = env.fakes["stable"]
    fake.hold = True
    with env.http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
        lines = s.iter_lines()
        next(lines)
        time.sleep(0.4)  # the stream is held open this long after its first chunk
        fake.release.set()
        list(lines)
    assert env.admin.stats("stable", since)["p50_ms"] >= 400


# -- health -----------------------------------------------------------------------------------


def test_health_follows_the_weighted_upstreams(env: Setup) -> None:
    assert env.http.get("/health").status_code == 200
    env.admin.set_state({**env.upstreams, "gone": free_url()}, {"gone": 100})
    answer = env.http.get("/health")  # a state change drops the cached answer
    assert answer.status_code == 503
    assert answer.json()["upstreams"] == {"gone": "down"}
    env.admin.set_state(env.upstreams, {"canary": 100})
    assert env.http.get("/health").status_code == 200
    env.fakes["canary"].healthy = False
    assert env.http.get("/health").status_code == 200  # cached for a few seconds


# -- state and admin --------------------------------------------------------------------------


def test_weights_persist_across_a_restart(env: Setup, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    first = Served(build_app(path))
    RouterClient(first.url).set_state(env.upstreams, {"stable": 0, "canary": 100})
    first.stop()
    assert json.loads(path.read_text())["weights"] == {"stable": 0, "canary": 100}
    assert not [p for p in path.parent.iterdir() if p.name != "state.json"]  # no temp left
    second = Served(build_app(path))
    try:
        assert RouterClient(second.url).state()["weights"] == {"stable": 0, "canary": 100}
        answer = httpx.post(f"{second.url}/v1/chat/completions", json=CHAT, timeout=30)
        assert answer.headers[DEPLOYMENT_HEADER] == "canary"
    finally:
        second.stop()


@pytest.mark.parametrize(
    "weights",
    [
        {"stable": 60, "canary": 39},  # sums to 99
        {"stable": 110, "canary": -10},
        {"stable": 50.5, "canary": 49.5},
        {"stable": True, "canary": 99},
        {"stable": 90, "other": 10},  # unknown deployment
        [90, 10],
    ],
)
def test_invalid_weights_are_400_and_change_nothing(env: Setup, weights: Any) -> None:
    before = env.admin.state()
    with pytest.raises(RouterError) as caught:
        env.admin._call("PUT", "/router/weights", weights)
    assert caught.value.status == 400
    with pytest.raises(RouterError) as caught:
        env.admin._call("PUT", "/router/state", {"upstreams": env.upstreams, "weights": weights})
    assert caught.value.status == 400
    assert env.admin.state() == before
    assert json.loads(env.state_file.read_text()) == before


def test_invalid_state_messages_name_every_problem() -> None:
    with pytest.raises(StateError) as caught:
        parse_state({"upstreams": {"a b": "ftp://x"}, "weights": {"a b": 100}, "extra": 1})
    message = str(caught.value)
    assert "'extra'" in message and "bad deployment name" in message and "http(s) URL" in message
    assert parse_state(
        {"upstreams": {"a": "http://127.0.0.1:1/"}, "weights": {"a": 100}}
    ).upstreams == {"a": "http://127.0.0.1:1"}


def test_corrupt_state_file_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"upstreams": {"a": "http://127.0.0.1:1"}, "weights": {"a": 7}}')
    with pytest.raises(StateError, match="sum to 100"):
        build_app(path)


def test_admin_from_non_loopback_is_403(tmp_path: Path) -> None:
    app = build_app(tmp_path / "state.json")
    good = {"upstreams": {"a": "http://127.0.0.1:1"}, "weights": {"a": 100}}

    async def put(client: tuple[str, int], path: str, body: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
            return await http.put(path, json=body)

    remote = ("203.0.113.7", 4321)
    assert asyncio.run(put(remote, "/router/state", good)).status_code == 403
    assert asyncio.run(put(remote, "/router/weights", {"a": 100})).status_code == 403
    assert not (tmp_path / "state.json").exists()
    assert asyncio.run(put(("127.0.0.1", 4321), "/router/state", good)).status_code == 200
    assert asyncio.run(put(("::1", 4321), "/router/weights", {"a": 100})).status_code == 200


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    for host in ("10.0.0.1", "203.0.113.7", "::ffff:10.0.0.1", "localhost", "testclient", "", None):
        assert not is_loopback(host), host


def test_importing_the_client_stays_light() -> None:
    # The release code imports RouterClient; the server side loads only in build_app.
    probe = "import sys, providers.local.router; print(*sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(result.stdout.split())
    assert "providers.local.router" in loaded
    assert not loaded & {"fastapi", "starlette", "httpx", "uvicorn", "prometheus_client"}


# -- pure pieces ------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) is None


def test_samples_window_and_probes() -> None:
    samples = Samples(size=4)
    for i, (status, forced) in enumerate([(200, False), (503, False), (200, True), (404, False)]):
        samples.add("a", Sample(100.0 + i, status, 10.0 * (i + 1), forced))
    summary = samples.summary("a", since=101.0, now=200.0)
    assert (summary["requests"], summary["errors"], summary["client_errors"]) == (2, 1, 1)
    assert (summary["window_start"], summary["window_end"]) == (101.0, 200.0)
    assert samples.summary("a", include_probes=True, now=200.0)["requests"] == 4
    samples.add("a", Sample(104.0, 200, 1.0, False))  # the ring drops the oldest
    assert samples.summary("a", since=0.0, now=200.0)["window_start"] == 101.0
    empty = samples.summary("b", since=5.0, now=9.0)
    assert (empty["requests"], empty["p95_ms"]) == (0, None)
