"""Our server (continuous batching) vs. a naive server (one request at a time), one run.

    python benchmarks/serving.py [--run-dir runs/RUN_ID] [--quick] [--max-tokens 32]

Both serve builtin:tiny-chat with a LoRA adapter (the run's adapter with --run-dir, else
a randomly initialised one) and get the same chat requests: tickets from the bundled
golden set, greedy, exactly --max-tokens tokens each (ours: vLLM's `ignore_eos`; naive:
transformers' `min_new_tokens`), so both do the same work and produce the same text
(checked). The naive server is what a first FastAPI wrapper looks like: a
`transformers.pipeline("text-generation")` called per request under a lock.

Closed-loop clients (each sends its next request when the last one returned) at 1, 4
and 16 concurrency; printed per level: generated tokens/s, p50/p95 request latency, and
the ratio ours/naive. Each server runs alone in its own process; the clients share the
machine with it, the same for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BASE = "builtin:tiny-chat"
GOLDEN = REPO / "recipes/catalog/data/support/golden.jsonl"
LEVELS = (1, 4, 16)
TARGET_RATIO = 4.0  # at 16 clients, with a lower p95


# -- the two servers (each in its own process) -----------------------------------------


def serve_ours(adapter: Path, name: str, port: int, max_tokens: int, prefix_mb: int) -> None:
    from providers.local.server import ServeConfig, serve

    config = ServeConfig(
        source=BASE,
        adapters={name: str(adapter)},
        port=port,
        max_tokens_limit=max_tokens,
        prefix_cache_mb=prefix_mb,
    )
    serve(config)


def serve_naive(adapter: Path, name: str, port: int) -> None:
    import threading

    import torch
    import uvicorn
    from fastapi import FastAPI
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from providers.local.server.config import cpu_threads
    from training_scripts.modeling import resolve_base

    torch.set_num_threads(cpu_threads(None))  # the same threads as ours: only batching differs
    path = resolve_base(BASE)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter).eval()
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    lock = threading.Lock()  # one model, one request at a time
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> dict[str, Any]:  # sync: runs in the thread pool
        n = body["max_tokens"]
        prompt = tokenizer.apply_chat_template(
            body["messages"], add_generation_prompt=True, tokenize=False
        )
        prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        with lock:
            out = generator(
                body["messages"],
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                return_tensors=True,
            )
        ids = out[0]["generated_token_ids"][prompt_len:]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        return {
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_len, "completion_tokens": len(ids)},
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- the load generator ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prompts(count: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines()[:count]]
    return [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]


async def level(
    url: str, name: str, work: list[list[dict]], clients: int, max_tokens: int
) -> dict[str, Any]:
    """`clients` closed-loop clients share `work`; returns tokens/s and latencies."""
    import httpx

    queue = list(enumerate(work))
    latencies: list[float] = []
    texts: dict[int, str] = {}
    tokens = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        while queue:
            index, messages = queue.pop(0)
            body = {
                "model": name,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            }
            start = time.perf_counter()
            response = await http.post(f"{url}/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            data = response.json()
            assert data["usage"]["completion_tokens"] == max_tokens, data["usage"]
            tokens += data["usage"]["completion_tokens"]
            texts[index] = data["choices"][0]["message"]["content"]

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return {
        "tokens_per_s": tokens / seconds,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "texts": texts,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[rank]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become healthy")


def measure(kind: str, adapter: Path, name: str, args: argparse.Namespace) -> dict[int, dict]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", kind, "--adapter", str(adapter)]
    command += ["--name", name, "--port", str(port), "--max-tokens", str(args.max_tokens)]
    command += ["--prefix-cache-mb", str(args.prefix_cache_mb)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error"}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        warm = prompts(2)
        asyncio.run(level(url, name, warm, 1, args.max_tokens))  # first calls are slower
        results = {}
        for clients in LEVELS:
            count = max(2 * clients, 8) if args.quick else max(4 * clients, 16)
            work = prompts(count)
            results[clients] = asyncio.run(level(url, name, work, clients, args.max_tokens))
        return results
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def random_adapter(directory: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training_scripts.modeling import resolve_base

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_base(BASE))
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")
    config.init_lora_weights = False  # random B too: the adapter changes the outputs
    get_peft_model(model, config).save_pretrained(directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="serve this run's adapter (else random)")
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--prefix-cache-mb", type=int, default=256, help="ours: 0 turns prefix caching off"
    )
    parser.add_argument("--serve", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--adapter", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "ours":
        return serve_ours(args.adapter, args.name, args.port, args.max_tokens, args.prefix_cache_mb)
    if args.serve == "naive":
        return serve_naive(args.adapter, args.name, args.port)

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        if args.run_dir:
            recipe = json.loads((args.run_dir / "recipe.json").read_text())["recipe"]
            adapter, name = args.run_dir / "adapter", recipe["name"]
        else:
            adapter, name = random_adapter(Path(scratch) / "adapter"), "random-lora"
        ours = measure("ours", adapter, name, args)
        naive = measure("naive", adapter, name, args)

    print(
        f"\n{BASE} + LoRA adapter {name!r}: greedy, {args.max_tokens} tokens per request, "
        f"{os.cpu_count()} CPU cores, prefix cache "
        + (f"{args.prefix_cache_mb} MB" if args.prefix_cache_mb else "off")
    )
    header = (
        f"{'clients':>7} | {'ours tok/s':>10} | {'naive tok/s':>11} | {'ratio':>5} | "
        f"{'ours p50/p95 ms':>15} | {'naive p50/p95 ms':>16}"
    )
    print(header)
    print("-" * len(header))
    for clients in LEVELS:
        a, b = ours[clients], naive[clients]
        print(
            f"{clients:>7} | {a['tokens_per_s']:>10,.0f} | {b['tokens_per_s']:>11,.0f} | "
            f"{a['tokens_per_s'] / b['tokens_per_s']:>5.1f} | "
            f"{a['p50'] * 1000:>7,.0f}/{a['p95'] * 1000:<7,.0f} | "
            f"{b['p50'] * 1000:>8,.0f}/{b['p95'] * 1000:<7,.0f}"
        )
    same = sum(
        ours[c]["texts"][i] == naive[c]["texts"][i] for c in LEVELS for i in naive[c]["texts"]
    )
    total = sum(len(naive[c]["texts"]) for c in LEVELS)
    print(f"identical outputs (ours vs naive, same prompt): {same}/{total}")
    top = LEVELS[-1]
    ratio = ours[top]["tokens_per_s"] / naive[top]["tokens_per_s"]
    met = ratio >= TARGET_RATIO and ours[top]["p95"] < naive[top]["p95"]
    print(
        f"target (>= {TARGET_RATIO:.0f}x naive tokens/s at {top} clients, lower p95): "
        + ("met" if met else "NOT met")
    )
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
