"""`recipe serve` end to end: a real uvicorn server on loopback, driven by the official
`openai` client (and raw httpx where the client would hide the wire format).

One module-scoped server serves builtin:tiny-chat, a run-directory-shaped folder (its
adapter is named after the recipe) and a bare adapter directory, each adapter a real
LoRA made with peft here (random weights, so it changes the outputs). Small throwaway
servers cover the queue limit (429) and the drain (503).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from providers.local.server import ServeConfig, build_app
from providers.local.server.runner import DrainingServer, uvicorn_config
from training_scripts.modeling import BUILTIN_DIR

BASE = "builtin:tiny-chat"
KEY = "sk-test-0123456789"
LIMIT = 64  # the server's max_tokens_limit
HELLO = [{"role": "user", "content": "Hello, my card was stolen yesterday. What now?"}]


class Running:
    """A uvicorn server in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, config: ServeConfig):
        self.app = build_app(config)
        self.state = self.app.state.serving
        ready = threading.Event()
        self.server = DrainingServer(
            uvicorn_config(self.app, "127.0.0.1", 0, config.drain_timeout),
            self.state,
            config.drain_timeout,
            on_ready=lambda _url: ready.set(),
        )
        self.server.config.log_level = "warning"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert ready.wait(60), "the server did not start"
        assert self.server.url
        self.url = self.server.url

    def client(self, key: str | None = KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0, timeout=30, **options
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bare LoRA adapter dir and a run-directory-shaped folder holding another."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("serve")
    tokenizer = AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat")
    made = {}
    for seed, name in ((1, "rand-adapter"), (2, "run")):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(BUILTIN_DIR / "tiny-chat")
        # Random A and B (not peft's zero B), so the adapter really changes the outputs.
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        lora.init_lora_weights = False
        target = root / name / "adapter" if name == "run" else root / name
        get_peft_model(model, lora).save_pretrained(target)
        made[name] = root / name
    tokenizer.save_pretrained(made["run"] / "adapter")
    recipe = {"name": "triage", "model": {"base": BASE, "revision": None}}
    (made["run"] / "recipe.json").write_text(json.dumps({"contract": 1, "recipe": recipe}))
    return made


@pytest.fixture(scope="module")
def server(adapters: dict[str, Path]) -> Iterator[Running]:
    running = Running(
        ServeConfig(
            source=str(adapters["run"]),
            adapters={"rand": str(adapters["rand-adapter"])},
            api_key=KEY,
            max_batch=16,
            max_queue=64,
            max_tokens_limit=LIMIT,
        )
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Running) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def reference(adapters: dict[str, Path]) -> Callable[[str, list[int], int], list[int]]:
    """Greedy continuation by transformers' own generate(), the ground truth."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(BUILTIN_DIR / "tiny-chat", dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapters["run"] / "adapter", adapter_name="triage")
    model.eval()

    def generate(name: str, ids: list[int], n: int) -> list[int]:
        with torch.inference_mode():
            kwargs = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False}
            if name == BASE:
                with model.disable_adapter():
                    out = model.generate(input_ids=torch.tensor([ids]), **kwargs)
            else:
                out = model.generate(input_ids=torch.tensor([ids]), **kwargs)
        return out[0, len(ids) :].tolist()

    return generate


def chat_ids(messages: list[dict[str, str]]) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def decode(ids: list[int]) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat").decode(
        ids, skip_special_tokens=True
    )


def metric(server: Running, name: str, **labels: str) -> float:
    """The value of one sample in the server's /metrics (0 when absent)."""
    text = httpx.get(f"{server.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def fixed(n: int, **extra: Any) -> dict[str, Any]:
    """Exactly n tokens, greedy: vLLM's ignore_eos extension, sent via extra_body."""
    return {"max_tokens": n, "temperature": 0, "extra_body": {"ignore_eos": True, **extra}}


# -- models, health, metrics ---------------------------------------------------------------


def test_models_lists_the_base_and_each_adapter_with_parent_and_root(
    client: openai.OpenAI, adapters: dict[str, Path]
) -> None:
    cards = {m.id: m for m in client.models.list()}
    assert set(cards) == {BASE, "triage", "rand"}
    assert cards[BASE].parent is None
    assert cards[BASE].root == str(BUILTIN_DIR / "tiny-chat")
    assert cards["triage"].parent == BASE
    assert cards["triage"].root == str(adapters["run"] / "adapter")
    assert cards["rand"].parent == BASE
    assert cards["rand"].root == str(adapters["rand-adapter"])
    assert {m.object for m in cards.values()} == {"model"}
    assert cards["rand"].max_model_len == 1024


def test_health_is_open_and_ok(server: Running) -> None:
    response = httpx.get(f"{server.url}/health")  # no key needed
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# -- generation ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", [BASE, "triage"])
def test_chat_equals_transformers_generate_with_exact_usage(
    client: openai.OpenAI, reference: Callable, model: str
) -> None:
    reply = client.chat.completions.create(model=model, messages=HELLO, **fixed(12))
    prompt = chat_ids(HELLO)
    expected = reference(model, prompt, 12)
    assert reply.object == "chat.completion"
    assert reply.model == model
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == decode(expected)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == len(prompt) + 12


def test_adapters_change_the_output(client: openai.OpenAI) -> None:
    texts = {
        m: client.chat.completions.create(model=m, messages=HELLO, **fixed(16))
        .choices[0]
        .message.content
        for m in (BASE, "triage", "rand")
    }
    assert len(set(texts.values())) == 3, texts


def test_chat_ends_with_stop_at_eos_and_counts_it(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=BASE, messages=HELLO, max_tokens=LIMIT, temperature=0
    )
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length")
    if choice.finish_reason == "stop":  # EOS is generated, so counted (like vLLM)
        assert reply.usage.completion_tokens < LIMIT


def test_streaming_chat_sends_chunks_usage_and_done(server: Running, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="rand", messages=HELLO, **fixed(10))
    stream = client.chat.completions.create(
        model="rand",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
        **fixed(10),
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "rand" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    # The wire format itself: SSE `data:` lines ending with [DONE].
    body = {"model": "rand", "messages": HELLO, "stream": True, "max_tokens": 3}
    raw = httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert "usage" not in json.loads(events[0].removeprefix("data: "))


def test_completions_plain_and_streaming(client: openai.OpenAI) -> None:
    from transformers import AutoTokenizer

    prompt = "My card was declined at the pharmacy"
    reply = client.completions.create(model="triage", prompt=prompt, **fixed(8))
    assert reply.object == "text_completion"
    assert reply.choices[0].finish_reason == "length"
    tokenizer = AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat")
    assert reply.usage.prompt_tokens == len(tokenizer(prompt)["input_ids"])
    assert reply.usage.completion_tokens == 8
    stream = client.completions.create(
        model="triage",
        prompt=prompt,
        stream=True,
        stream_options={"include_usage": True},
        **fixed(8),
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
    assert chunks[-1].usage.completion_tokens == 8
    # Token ids are a prompt too, as in OpenAI's API.
    by_ids = client.completions.create(
        model="triage", prompt=tokenizer(prompt)["input_ids"], **fixed(8)
    )
    assert by_ids.choices[0].text == reply.choices[0].text


def test_stop_strings_cut_the_text_and_end_with_stop(client: openai.OpenAI) -> None:
    free = client.chat.completions.create(model=BASE, messages=HELLO, **fixed(24))
    text = free.choices[0].message.content
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), text
    expected = text[: text.find(stop)]
    for stream in (False, True):
        kwargs = {**fixed(24), "stop": [stop, "never-seen-stop"], "stream": stream}
        reply = client.chat.completions.create(model=BASE, messages=HELLO, **kwargs)
        if stream:
            chunks = [c for c in reply if c.choices]
            got = "".join(c.choices[0].delta.content or "" for c in chunks)
            reason = chunks[-1].choices[0].finish_reason
        else:
            got, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
        assert got == expected
        assert reason == "stop"
    single = client.completions.create(model=BASE, prompt="Hello", **fixed(24))
    cut = single.choices[0].text[2:5]
    again = client.completions.create(model=BASE, prompt="Hello", stop=cut, **fixed(24))
    assert again.choices[0].text == single.choices[0].text[: single.choices[0].text.find(cut)]
    assert again.choices[0].finish_reason == "stop"


def test_a_shared_prefix_is_reused_and_changes_nothing(
    server: Running, client: openai.OpenAI, reference: Callable
) -> None:
    system = {
        "role": "system",
        "content": "Route the ticket to one queue: billing_dispute, card_lost_stolen, "
        "fraud_report, account_access, loan_inquiry, appointment_scheduling, "
        "prescription_refill, insurance_claim, medical_records, lab_results.",
    }
    first = [system, {"role": "user", "content": "I was charged twice for one visit."}]
    second = [system, {"role": "user", "content": "Where are my lab results from May?"}]
    client.chat.completions.create(model=BASE, messages=first, **fixed(4))
    before = metric(server, "recipe_serve_prompt_tokens_cached_total", model=BASE)
    reply = client.chat.completions.create(model=BASE, messages=second, **fixed(8))
    reused = metric(server, "recipe_serve_prompt_tokens_cached_total", model=BASE) - before
    assert reused >= 64  # the system prompt's full blocks
    assert reply.choices[0].message.content == decode(reference(BASE, chat_ids(second), 8))
    assert reply.usage.prompt_tokens == len(chat_ids(second))  # cached tokens still count


def test_same_seed_same_sample_and_greedy_is_deterministic(client: openai.OpenAI) -> None:
    def sample(seed: int | None, temperature: float) -> str:
        reply = client.chat.completions.create(
            model="triage",
            messages=HELLO,
            max_tokens=16,
            temperature=temperature,
            top_p=0.95,
            seed=seed,
            extra_body={"ignore_eos": True},
        )
        return reply.choices[0].message.content

    assert sample(7, 1.0) == sample(7, 1.0)
    assert len({sample(s, 1.0) for s in range(5)}) > 1  # the seed matters
    assert sample(None, 0) == sample(None, 0)


# -- batching, disconnects ----------------------------------------------------------------


def test_concurrent_requests_are_batched_and_match_sequential(
    server: Running, client: openai.OpenAI
) -> None:
    models = [BASE, "triage", "rand"]
    prompts = [
        [{"role": "user", "content": f"Ticket {i}: " + "please help " * (i % 5)}] for i in range(16)
    ]
    sequential = [
        client.chat.completions.create(model=models[i % 3], messages=p, **fixed(8))
        .choices[0]
        .message.content
        for i, p in enumerate(prompts)
    ]
    steps_before = metric(server, "recipe_serve_batch_size_count")
    single_before = metric(server, "recipe_serve_batch_size_bucket", le="1.0")

    async def all_at_once() -> list[Any]:
        async with openai.AsyncOpenAI(
            base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60
        ) as aclient:
            return await asyncio.gather(
                *(
                    aclient.chat.completions.create(model=models[i % 3], messages=p, **fixed(8))
                    for i, p in enumerate(prompts)
                )
            )

    replies = asyncio.run(all_at_once())
    assert [r.choices[0].message.content for r in replies] == sequential
    assert all(r.usage.completion_tokens == 8 for r in replies)
    steps = metric(server, "recipe_serve_batch_size_count") - steps_before
    single = metric(server, "recipe_serve_batch_size_bucket", le="1.0") - single_before
    assert steps > single, "no forward pass had more than one row"
    assert server.state.engine.max_rows_seen > 1
    # 16 requests x 8 tokens, batched: far fewer forward passes than the 128 sequential ones.
    assert steps < 64


def test_a_streaming_client_that_leaves_frees_its_slot(server: Running) -> None:
    generated = metric(server, "recipe_serve_generation_tokens_total", model="rand")
    body = {"model": "rand", "messages": HELLO, "stream": True, **fixed(LIMIT)}
    body.update(body.pop("extra_body"))
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # the first chunk arrived: the request is in the batch; now leave
    wait_until(lambda: metric(server, "recipe_serve_running_requests", model="rand") == 0)
    assert server.state.engine.load() == (0, 0)
    wait_until(
        lambda: metric(server, "recipe_serve_generation_tokens_total", model="rand") > generated
    )
    spent = metric(server, "recipe_serve_generation_tokens_total", model="rand") - generated
    assert spent < LIMIT, "the generation ran to the end although its client had left"


def test_a_waiting_client_that_leaves_frees_its_queue_place(server: Running) -> None:
    engine = server.state.engine
    engine.pause()
    try:
        body = {"model": "triage", "messages": HELLO, "max_tokens": 4}
        headers = {"authorization": f"Bearer {KEY}"}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=0.5)
        assert metric(server, "recipe_serve_queue_depth", model="triage") in (0, 1)
        wait_until(lambda: metric(server, "recipe_serve_queue_depth", model="triage") == 0)
        assert engine.load() == (0, 0)
    finally:
        engine.resume()


def _held_together(server: Running, calls: list[Callable[[], Any]]) -> list[dict[str, Any]]:
    """Run the calls with the engine paused until all are queued: one batch takes them."""
    engine = server.state.engine
    engine.pause()
    try:
        started = [_in_background(call) for call in calls]
        wait_until(lambda: engine.load()[0] == len(calls))
    finally:
        engine.resume()
    for thread, _ in started:
        thread.join(60)
    wait_until(lambda: engine.load() == (0, 0))
    return [result for _, result in started]


@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 1e-6])
def test_a_tiny_temperature_is_greedy_and_fails_no_neighbour(
    server: Running, client: openai.OpenAI, temperature: float
) -> None:
    def ask(t: float) -> Callable[[], Any]:
        return lambda: client.chat.completions.create(
            model=BASE, messages=HELLO, max_tokens=8, temperature=t, extra_body={"ignore_eos": True}
        )

    bystander, tiny = _held_together(server, [ask(0), ask(temperature)])
    assert "error" not in bystander and "error" not in tiny, (bystander, tiny)
    greedy = bystander["value"].choices[0].message.content
    assert tiny["value"].choices[0].message.content == greedy
    assert tiny["value"].usage.completion_tokens == 8


def test_a_request_whose_sampling_fails_fails_alone(
    server: Running, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("probability tensor contains either inf, nan or element < 0")

    monkeypatch.setattr(torch, "multinomial", broken)  # only sampled rows call it

    def ask_sampled() -> Any:
        return client.chat.completions.create(
            model=BASE, messages=HELLO, max_tokens=8, temperature=1.0
        )

    greedy, sampled = _held_together(
        server,
        [
            lambda: client.chat.completions.create(model=BASE, messages=HELLO, **fixed(8)),
            ask_sampled,
        ],
    )
    assert "error" not in greedy, greedy
    assert greedy["value"].usage.completion_tokens == 8
    error = sampled["error"]
    assert isinstance(error, openai.InternalServerError)
    assert _error(error)["message"] == "generation failed; see the server log"


# -- errors ---------------------------------------------------------------------------------


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_model_is_404_listing_the_served_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-5", messages=HELLO, max_tokens=2)
    error = _error(caught.value)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    for name in (BASE, "triage", "rand"):
        assert name in error["message"]


def test_prompt_over_the_context_is_400(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "refund please " * 800}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BASE, messages=long, max_tokens=2)
    error = _error(caught.value)
    assert error["code"] == "context_length_exceeded"
    assert "1024" in error["message"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_tokens": LIMIT + 1}, "max_tokens"),
        ({"max_completion_tokens": LIMIT + 1}, "max_completion_tokens"),
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"stop": 5}, "stop"),
        ({"max_tokens": 2, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
    ids=["max_tokens", "max_completion_tokens", "n", "temperature", "stop-type", "options"],
)
def test_bad_parameters_are_400(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BASE, messages=HELLO, **kwargs)
    error = _error(caught.value)
    assert error["type"] == "invalid_request_error"
    assert (error["param"] or "").startswith(param)
    if param == "n":
        assert "n > 1 is not supported" in error["message"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"model": "builtin:tiny-chat", "messages": "hi"}', b""],
    ids=["malformed", "array", "wrong-type", "empty"],
)
def test_malformed_bodies_are_400_in_openai_shape(server: Running, content: bytes) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=content,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_wrong_or_missing_key_is_401(server: Running) -> None:
    for key in ("wrong-key", None):
        with pytest.raises(openai.AuthenticationError) as caught:
            server.client(key=key).models.list()
        assert _error(caught.value)["code"] == "invalid_api_key"
    response = httpx.post(f"{server.url}/v1/completions", json={})
    assert response.status_code == 401  # before the body is even looked at
    assert httpx.get(f"{server.url}/metrics").status_code == 200  # scrapers need no key


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (f"bearer {KEY}", 200),
        (f"BEARER {KEY}", 200),
        (f"Bearer  {KEY}", 200),
        (f"Basic {KEY}", 401),
        (f"Bearer{KEY}", 401),
        (KEY, 401),
    ],
)
def test_the_auth_scheme_is_case_insensitive(server: Running, value: str, status: int) -> None:
    response = httpx.get(f"{server.url}/v1/models", headers={"authorization": value})
    assert response.status_code == status  # RFC 7235 §2.1: the scheme is case-insensitive


def _timed_health(url: str) -> float:
    start = time.perf_counter()
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    return time.perf_counter() - start


def test_a_huge_body_is_413_at_once_and_health_stays_quick(server: Running) -> None:
    body = json.dumps(
        {"model": BASE, "messages": [{"role": "user", "content": "word " * 2_000_000}]}
    )
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    url = f"{server.url}/v1/chat/completions"
    thread, result = _in_background(
        lambda: httpx.post(url, content=body, headers=headers, timeout=60)
    )
    time.sleep(0.2)
    assert _timed_health(server.url) < 1.0
    thread.join(60)
    response = result["value"]
    assert response.status_code == 413
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"


def test_a_huge_chunked_body_is_413_too(server: Running) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "builtin:tiny-chat", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"word " * 20_000  # 10 MB in all, without a Content-Length
        yield b'"}]}'

    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_small_chunked_body_still_works(server: Running) -> None:
    body = json.dumps(
        {"model": BASE, "prompt": "Hello", "max_tokens": 2, "ignore_eos": True}
    ).encode()
    response = httpx.post(
        f"{server.url}/v1/completions",
        content=iter([body[:10], body[10:]]),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 2


def test_a_prompt_longer_than_the_context_can_hold_is_refused_untokenized(
    server: Running, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = server.state.loaded.served[BASE].tokenizer
    calls = []
    original = tokenizer.apply_chat_template

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "apply_chat_template", spy)
    long = [{"role": "user", "content": "x" * 200_000}]  # 1024 tokens hold ~20k characters
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BASE, messages=long, max_tokens=2)
    error = _error(caught.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "1024" in error["message"] and "characters" in error["message"]
    assert not calls, "the prompt was tokenized"
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=BASE, prompt="x" * 200_000, max_tokens=2)
    assert _error(caught.value)["code"] == "context_length_exceeded"
    assert "characters" in _error(caught.value)["message"]


def test_unknown_routes_are_404_in_openai_shape(server: Running) -> None:
    response = httpx.get(f"{server.url}/v2/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_metrics_count_requests_tokens_and_latency_per_model(
    server: Running, client: openai.OpenAI
) -> None:
    for model in ("triage", "rand"):
        client.chat.completions.create(model=model, messages=HELLO, **fixed(2))
    text = httpx.get(f"{server.url}/metrics").text
    for name in (
        "recipe_serve_requests_total",
        "recipe_serve_request_duration_seconds_bucket",
        "recipe_serve_time_to_first_token_seconds_bucket",
        "recipe_serve_prompt_tokens_total",
        "recipe_serve_generation_tokens_total",
        "recipe_serve_queue_depth",
        "recipe_serve_running_requests",
        "recipe_serve_batch_size_bucket",
    ):
        assert name in text, name
    for model in ("triage", "rand"):
        labels = {"route": "/v1/chat/completions", "model": model, "status": "200"}
        assert metric(server, "recipe_serve_requests_total", **labels) >= 1
        assert metric(server, "recipe_serve_generation_tokens_total", model=model) >= 2
        assert metric(server, "recipe_serve_time_to_first_token_seconds_count", model=model) >= 1
    assert metric(server, "recipe_serve_queue_depth", model=BASE) == 0
    assert KEY not in text


# -- capacity and shutdown (their own small servers) --------------------------------------


@pytest.fixture
def small() -> Iterator[Running]:
    running = Running(ServeConfig(source=BASE, max_batch=1, max_queue=1, drain_timeout=20))
    yield running
    running.state.engine.resume()
    if running.thread.is_alive():
        running.stop()


def _in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call()
        except Exception as exc:  # reported by the test's assertions
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_a_full_queue_is_429_and_the_held_requests_still_finish(small: Running) -> None:
    client = small.client(key=None)
    small.state.engine.pause()  # nothing is admitted: requests pile up in the queue
    held = [
        _in_background(
            lambda: client.chat.completions.create(model=BASE, messages=HELLO, **fixed(2))
        )
        for _ in range(2)  # one batch slot + one queue place
    ]
    wait_until(lambda: small.state.engine.load()[0] == 2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=BASE, messages=HELLO, max_tokens=2)
    assert _error(caught.value)["type"] == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "1"
    small.state.engine.resume()
    for thread, result in held:
        thread.join(30)
        assert result["value"].usage.completion_tokens == 2


def test_draining_refuses_new_requests_and_finishes_those_in_flight(small: Running) -> None:
    client = small.client(key=None)
    small.state.engine.pause()
    thread, result = _in_background(
        lambda: client.chat.completions.create(model=BASE, messages=HELLO, **fixed(4))
    )
    wait_until(lambda: small.state.engine.load()[0] == 1)
    small.server._loop.call_soon_threadsafe(small.server.begin_drain)  # what SIGTERM does
    wait_until(lambda: small.state.draining)
    assert httpx.get(f"{small.url}/health").status_code == 503
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=BASE, messages=HELLO, max_tokens=2)
    assert caught.value.status_code == 503
    assert _error(caught.value)["code"] == "shutting_down"
    small.state.engine.resume()
    thread.join(30)
    assert result["value"].choices[0].finish_reason == "length"
    small.thread.join(30)  # the drain ended and the server exited by itself
    assert not small.thread.is_alive()


def test_tokenizing_a_long_prompt_runs_off_the_event_loop(
    small: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.local.server.api import INLINE_TOKENIZE_CHARS

    tokenizer = small.state.loaded.served[BASE].tokenizer
    original = tokenizer.apply_chat_template
    entered = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:  # a long prompt's seconds of tokenizing
        entered.set()
        time.sleep(2)
        return original(*args, **kwargs)

    monkeypatch.setattr(tokenizer, "apply_chat_template", slow)
    client = small.client(key=None)
    long = [{"role": "user", "content": "x" * (INLINE_TOKENIZE_CHARS + 1)}]
    thread, result = _in_background(
        lambda: client.chat.completions.create(model=BASE, messages=long, max_tokens=2)
    )
    assert entered.wait(30)
    assert _timed_health(small.url) < 1.0
    thread.join(30)
    assert _error(result["error"])["code"] == "context_length_exceeded"  # once tokenized


def test_a_non_loopback_host_needs_a_key() -> None:
    from providers.local.server import check
    from recipes.errors import RecipeInputError

    with pytest.raises(RecipeInputError, match="needs an API key"):
        check(ServeConfig(source=BASE, host="0.0.0.0"))
    assert check(ServeConfig(source=BASE, host="0.0.0.0", api_key="k")).ids() == [BASE]


# -- property: no body makes the server fail ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
known_keys = st.sampled_from(
    [
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stream_options",
        "stop",
        "seed",
        "logprobs",
        "tools",
        "ignore_eos",
        "min_tokens",
        "response_format",
    ]
)
random_bodies = st.dictionaries(known_keys | st.text(max_size=8), json_values, max_size=6)
valid_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "developer", "tool"]),
            "content": st.text(max_size=40)
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text()})),
        }
    ),
    min_size=1,
    max_size=3,
)
valid_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from([BASE, "triage", "rand", "other"]),
        "messages": valid_messages,
        "max_tokens": st.integers(1, 4),
    },
    optional={
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0.01, 1),
        "stream": st.booleans(),
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=5),
        "seed": st.integers(-(2**63), 2**64 - 1),
        "n": st.integers(1, 2),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "min_tokens": st.integers(0, 4),
        "ignore_eos": st.booleans(),
    },
)
# A valid body with one or two fields replaced by anything: reaches the deeper checks.
mutated_bodies = st.tuples(
    valid_bodies, st.dictionaries(known_keys, json_values, min_size=1, max_size=2)
).map(lambda pair: {**pair[0], **pair[1]})


@settings(
    max_examples=60,
    deadline=None,  # a valid body generates; its time is not the point here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=random_bodies | valid_bodies | mutated_bodies)
def test_no_json_body_makes_the_server_fail(server: Running, body: dict[str, Any]) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        # ensure_ascii: lone surrogates travel as \ud800 escapes, as any client may send
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n")
    else:
        assert response.json()["object"] == "chat.completion"


def test_check_needs_no_torch(tmp_path: Path) -> None:
    """check() reads JSON only: the CLI validates `recipe serve` arguments instantly
    (here a run without adapter: its merged/ model is served under the recipe's name)."""
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree(BUILTIN_DIR / "tiny-chat", run / "merged")
    (run / "recipe.json").write_text(json.dumps({"recipe": {"name": "r", "model": {"base": BASE}}}))
    code = (
        "import sys\n"
        "from providers.local.server import ServeConfig, check\n"
        f"print(check(ServeConfig(source={str(run)!r})).ids())\n"
        "heavy = {'torch', 'transformers', 'peft', 'fastapi', 'uvicorn'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BUILTIN_DIR.parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['r']"
