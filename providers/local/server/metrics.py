"""Prometheus metrics of one server, in a registry of its own (several apps per process
in tests; no global state). Names follow Prometheus conventions: `_total` counters,
`_seconds` histograms; `model` is a served id (the base or an adapter), never raw input.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "recipe_serve_requests",
            "HTTP requests by route, served model and status code",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recipe_serve_request_duration_seconds",
            "Time from request to the last byte of the response",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "recipe_serve_time_to_first_token_seconds",
            "Time from admission to the queue to the first generated token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "recipe_serve_prompt_tokens", "Prompt tokens prefilled", ["model"], registry=r
        )
        self.cached_prompt_tokens = Counter(
            "recipe_serve_prompt_tokens_cached",
            "Prompt tokens whose KV came from the prefix cache (not recomputed)",
            ["model"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "recipe_serve_generation_tokens", "Tokens generated", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            "recipe_serve_queue_depth", "Requests waiting for a batch slot", ["model"], registry=r
        )
        self.running = Gauge(
            "recipe_serve_running_requests",
            "Requests in the running batch",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "recipe_serve_batch_size",
            "Rows in each forward pass of the engine (prefill or decode step)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )

    def register_model(self, model: str) -> None:
        """Zero-valued series from the start, so dashboards see every model at once."""
        self.queue_depth.labels(model=model).set(0)
        self.running.labels(model=model).set(0)
        self.prompt_tokens.labels(model=model)
        self.cached_prompt_tokens.labels(model=model)
        self.generated_tokens.labels(model=model)

    def render(self) -> bytes:
        return generate_latest(self.registry)
