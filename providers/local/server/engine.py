"""The generation engine: one thread owns the model and batches every request it holds.

Continuous batching (Orca, OSDI '22; vLLM's scheduler): between two decode steps the
worker admits waiting requests into free batch slots. It prefills them together
(left-padded), then merges their KV cache into the running batch's by left-padding the
shorter one, so old and new rows decode in the same forward pass from then on. A row
leaves the batch as soon as it ends (EOS, a stop string, max_tokens, the client gone);
its cache rows are dropped and columns no row needs any more are trimmed.

Requests for different adapters share a batch: peft runs a mixed batch when
`adapter_names=[...]` names one adapter per row ("__base__" for none). A batch on one
adapter skips that per-row routing, which costs about a third of a step on CPU.

The asyncio side never touches torch: it puts a Handle (handles.py) in a bounded queue;
the worker pushes Delta/Finished/Failed events back with loop.call_soon_threadsafe.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import torch

from providers.local.server import kvcache
from providers.local.server.handles import Delta, Failed, Finished, Handle, NotAccepting, QueueFull
from providers.local.server.metrics import ServerMetrics
from providers.local.server.models import BASE_ADAPTER, LoadedModels
from providers.local.server.prefixcache import BLOCK, PrefixCache
from providers.local.server.text import IncrementalText

log = logging.getLogger("recipe.serve")

# Temperatures below this sample like 0 (greedy): logits / 1e-40 overflow float32 to inf,
# and softmax then gives NaN. At 1e-5 a logit gap of 0.001 is already e^100 apart, so
# the sample is the argmax anyway (up to exact ties).
GREEDY_BELOW = 1e-5
FAILED = "generation failed; see the server log"


class _Row:
    """A request in the running batch."""

    def __init__(self, handle: Handle, device: Any):
        self.handle = handle
        self.params = handle.params
        self.model = handle.model
        self.prompt_len = len(handle.prompt_ids)
        self.generated = 0
        self.last_token = -1
        self.finished = False
        self.text = IncrementalText(handle.model.tokenizer, handle.params.stop)
        self.generator = None
        if (
            self.params.temperature >= GREEDY_BELOW
        ):  # per-request generator: a seed reproduces a sample
            self.generator = torch.Generator(device=device)
            if self.params.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.params.seed & 0xFFFF_FFFF_FFFF_FFFF)

    def suppress_eos(self) -> bool:
        return self.params.ignore_eos or self.generated < self.params.min_tokens


class Engine:
    def __init__(
        self,
        loaded: LoadedModels,
        max_batch: int,
        max_queue: int,
        metrics: ServerMetrics,
        prefix_cache_bytes: int = 0,
    ):
        self.loaded = loaded
        self.model = loaded.model
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.metrics = metrics
        self._cond = threading.Condition()
        self._waiting: collections.deque[Handle] = collections.deque()
        self._running = 0  # rows in the batch, readable under _cond from any thread
        self._stopping = False
        self._paused = False
        self._thread: threading.Thread | None = None
        # Worker-only state.
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None  # [rows, cache length] 1 = real token
        self._config = getattr(self.model, "config", None)
        self._mergeable = kvcache.joinable(self._config)
        # Prefix reuse builds caches by hand: only where rows can be joined, too.
        self.prefix_cache = None
        if prefix_cache_bytes and self._mergeable:
            self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self._active_adapter: str | None = None
        self.steps = 0
        self.max_rows_seen = 0

    # -- asyncio side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recipe-serve-engine", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def submit(self, handle: Handle) -> None:
        with self._cond:
            if not self.running:
                raise NotAccepting()
            # Free batch slots take requests at once; max_queue more may wait for one.
            if len(self._waiting) + self._running >= self.max_batch + self.max_queue:
                raise QueueFull()
            self._waiting.append(handle)
            self.metrics.queue_depth.labels(model=handle.model.id).inc()
            self._cond.notify()

    def cancel(self, handle: Handle) -> None:
        """The client is gone: free its queue place now, its batch row at the next step."""
        handle.cancelled = True
        with self._cond:
            if handle in self._waiting:
                self._waiting.remove(handle)
                self.metrics.queue_depth.labels(model=handle.model.id).dec()
                handle.done = True

    def pause(self) -> None:
        """Admit nothing new (running rows go on); for maintenance and tests."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify()

    def load(self) -> tuple[int, int]:
        """(waiting, running) requests."""
        with self._cond:
            return len(self._waiting), self._running

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker; whatever is still queued or running gets Failed."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- worker -------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                new = self._take()
                if new is None:
                    break
                try:
                    if new:
                        self._prefill(new)
                    if self._rows:
                        self._decode()
                except Exception:  # a failed forward pass fails its rows, not the server
                    log.exception("generation step failed")
                    self._fail_all(new or [], FAILED)
        self._fail_all([], "the server is shutting down")
        self._fail_waiting("the server is shutting down")

    def _take(self) -> list[Handle] | None:
        """New requests for free slots; [] to keep decoding; None to stop. Blocks when idle."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                free = self.max_batch - len(self._rows)
                if self._rows and not self._mergeable:
                    free = 0  # this cache type cannot grow: admit when the batch drains
                if self._waiting and free > 0 and not self._paused:
                    new = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
                    for handle in new:
                        self.metrics.queue_depth.labels(model=handle.model.id).dec()
                        self.metrics.running.labels(model=handle.model.id).inc()
                    self._running += len(new)
                    return new
                if self._rows:
                    return []
                self._cond.wait()

    def _forward(
        self, input_ids: Any, mask: Any, positions: Any, rows: list[_Row], cache: Any
    ) -> Any:
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": positions,
            "past_key_values": cache,
            "use_cache": True,
            "logits_to_keep": 1,  # the vocabulary projection of the last position only
        }
        if not self.loaded.has_adapters:
            return self.model(**kwargs)
        names = [row.model.peft_name for row in rows]
        if len(set(names)) > 1:
            return self.model(**kwargs, adapter_names=names)
        if names[0] == BASE_ADAPTER:
            with self.model.disable_adapter():
                return self.model(**kwargs)
        if self._active_adapter != names[0]:
            self.model.set_adapter(names[0])
            self._active_adapter = names[0]
        return self.model(**kwargs)

    def _prefill(self, handles: list[Handle]) -> None:
        device = self.loaded.device
        rows = []
        for handle in handles:
            if handle.cancelled:
                self._release(handle)
                handle.done = True
                continue
            try:
                rows.append(_Row(handle, device))
            except Exception:  # this request's own setup: it alone fails
                log.exception("a request could not be set up")
                handle.push(Failed(FAILED))
                self._release(handle)
        for group in prefill_groups(rows, self._mergeable):
            self._prefill_group(group)
        self._compact()

    def _prefill_group(self, rows: list[_Row]) -> None:
        """One forward pass over the rows' prompts, minus the blocks the prefix cache has.

        Row i's columns: [pad][cached prefix, p_i][pad][prompt rest, s_i]; the mask
        has zeros on the pads and the position ids count real tokens only.
        """
        device = self.loaded.device
        cached = [self._cached_prefix(row) for row in rows]
        prefix = [len(blocks) * BLOCK for blocks in cached]
        rest = [row.prompt_len - p for row, p in zip(rows, prefix, strict=True)]
        width_p, width_s = max(prefix), max(rest)
        pad = rows[0].model.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width_s), pad, dtype=torch.long)
        positions = torch.zeros((len(rows), width_s), dtype=torch.long)
        mask = torch.zeros((len(rows), width_p + width_s), dtype=torch.long)
        for i, row in enumerate(rows):
            p, s = prefix[i], rest[i]
            ids[i, width_s - s :] = torch.tensor(row.handle.prompt_ids[p:])
            positions[i, width_s - s :] = torch.arange(p, row.prompt_len)
            mask[i, width_p - p : width_p] = 1
            mask[i, width_p + width_s - s :] = 1
            self.metrics.prompt_tokens.labels(model=row.model.id).inc(row.prompt_len)
            if p:
                self.metrics.cached_prompt_tokens.labels(model=row.model.id).inc(p)
        cache = self._new_cache()
        if width_p:
            self._fill_prefix(cache, cached, width_p)
        ids, positions, mask = ids.to(device), positions.to(device), mask.to(device)
        out = self._forward(ids, mask, positions, rows, cache)
        self.metrics.batch_size.observe(len(rows))
        tokens = self._sample(out.logits[:, -1, :], rows)
        if self.prefix_cache is not None:
            for i, row in enumerate(rows):
                start = width_p + width_s - rest[i] - prefix[i]  # where token 0 would sit
                self._store_prefix(out.past_key_values, i, row, prefix[i], start)
        self._join(out.past_key_values, mask, rows)
        self._advance(rows, tokens)

    def _cached_prefix(self, row: _Row) -> list[Any]:
        if self.prefix_cache is None:
            return []
        return self.prefix_cache.lookup(row.model.peft_name, row.handle.prompt_ids)

    def _fill_prefix(self, cache: Any, cached: list[list[Any]], width: int) -> None:
        """Cached blocks, right-aligned at column `width`, into a fresh cache."""
        for layer_index, layer in enumerate(cache.layers):
            key, value = next(blocks for blocks in cached if blocks)[0][layer_index]
            keys = key.new_zeros((len(cached), key.shape[0], width, key.shape[-1]))
            values = value.new_zeros((len(cached), value.shape[0], width, value.shape[-1]))
            for i, blocks in enumerate(cached):
                if blocks:
                    length = len(blocks) * BLOCK
                    keys[i, :, width - length :] = torch.cat([b[layer_index][0] for b in blocks], 1)
                    values[i, :, width - length :] = torch.cat(
                        [b[layer_index][1] for b in blocks], 1
                    )
            layer.replace(keys, values)

    def _store_prefix(self, cache: Any, i: int, row: _Row, cached: int, start: int) -> None:
        """Row i's new full prompt blocks into the prefix cache. Its prompt tokens past
        the cached prefix are contiguous, from column start + cached on."""

        def block(j: int) -> list[tuple[Any, Any]]:
            column = start + j * BLOCK
            return [
                (
                    layer.keys[i, :, column : column + BLOCK].clone(),
                    layer.values[i, :, column : column + BLOCK].clone(),
                )
                for layer in cache.layers
            ]

        assert self.prefix_cache is not None
        self.prefix_cache.store(row.model.peft_name, row.handle.prompt_ids, cached // BLOCK, block)

    def _new_cache(self) -> Any:
        if not self._mergeable:
            return None  # the model builds its own kind
        return kvcache.new_cache(self._config)

    def _join(self, cache: Any, mask: Any, rows: list[_Row]) -> None:
        """Merge freshly prefilled rows into the running batch."""
        if not self._rows:
            self._cache, self._mask, self._rows = cache, mask, rows
            return
        self._mask = kvcache.join(self._cache, self._mask, cache, mask)
        self._rows = self._rows + rows

    def _decode(self) -> None:
        self._compact()  # cancelled rows leave before the step
        if not self._rows:
            return
        device = self.loaded.device
        rows = self._rows
        ids = torch.tensor([[row.last_token] for row in rows], device=device)
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1  # each row's own next position
        out = self._forward(ids, self._mask, positions, rows, self._cache)
        self.steps += 1
        self.max_rows_seen = max(self.max_rows_seen, len(rows))
        self.metrics.batch_size.observe(len(rows))
        self._advance(rows, self._sample(out.logits[:, -1, :], rows))
        self._compact()

    def _sample(self, logits: Any, rows: list[_Row]) -> list[int]:
        """Greedy for temperature 0 (or below GREEDY_BELOW), else temperature + top-p
        (nucleus) with the row's own generator: one request's seed does not depend on
        its batch neighbours. A row whose sampling raises fails alone (_fail_row)."""
        logits = logits.float()
        for i, row in enumerate(rows):
            if row.suppress_eos() and row.model.eos_ids:
                logits[i, list(row.model.eos_ids)] = float("-inf")
        chosen = logits.argmax(-1).tolist()
        for i, row in enumerate(rows):
            if row.generator is None or row.finished:
                continue
            try:
                chosen[i] = sample_row(logits[i], row.params, row.generator, chosen[i])
            except Exception:
                self._fail_row(row)
        return chosen

    def _advance(self, rows: list[_Row], tokens: list[int]) -> None:
        now = time.perf_counter()
        for row, token in zip(rows, tokens, strict=True):
            if row.finished:
                continue
            row.generated += 1
            if row.generated == 1:
                self.metrics.ttft.labels(model=row.model.id).observe(now - row.handle.submitted)
            if token in row.model.eos_ids:  # suppressed by _sample while it may not end
                self._finish(row, "", "stop")
                continue
            row.last_token = token
            try:
                delta = row.text.add(token)
            except Exception:  # this row's detokenizing: it alone fails
                self._fail_row(row)
                continue
            if row.text.stopped:
                self._finish(row, delta, "stop")
            elif row.generated >= row.params.max_tokens:
                self._finish(row, delta, "length")
            elif row.handle.stream and delta:
                row.handle.push(Delta(delta))

    def _finish(self, row: _Row, pending: str, reason: str) -> None:
        row.finished = True
        rest = row.text.finish()
        text = pending + rest if row.handle.stream else row.text.text
        self.metrics.generated_tokens.labels(model=row.model.id).inc(row.generated)
        row.handle.push(Finished(text, reason, row.prompt_len, row.generated))

    def _compact(self) -> None:
        """Drop finished and cancelled rows from the batch and its cache."""
        for row in self._rows:
            if row.handle.cancelled and not row.finished:
                row.finished = True
                self.metrics.generated_tokens.labels(model=row.model.id).inc(row.generated)
        keep = [i for i, row in enumerate(self._rows) if not row.finished]
        if len(keep) == len(self._rows):
            return
        for row in self._rows:
            if row.finished:
                self._release(row.handle)
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        self._mask = kvcache.keep_rows(self._cache, self._mask, keep)
        self._rows = [self._rows[i] for i in keep]

    def _release(self, handle: Handle) -> None:
        """Give back the batch slot of an admitted request (once)."""
        if handle.released:
            return
        handle.released = True
        with self._cond:
            self._running -= 1
        self.metrics.running.labels(model=handle.model.id).dec()

    def _fail_row(self, row: _Row) -> None:
        """One row's own step failed (its sampling, its text): it alone gets Failed; the
        next _compact drops it from the batch. Called inside an `except` block."""
        log.exception("generation failed for one request (%s)", row.model.id)
        row.finished = True
        self.metrics.generated_tokens.labels(model=row.model.id).inc(row.generated)
        if not row.handle.done:
            row.handle.push(Failed(FAILED))

    def _fail_all(self, new: list[Handle], message: str) -> None:
        """After a failed step: the batch and the requests being admitted get Failed."""
        for handle in [row.handle for row in self._rows] + new:
            if not handle.done:
                handle.push(Failed(message))
            self._release(handle)
        self._rows, self._cache, self._mask = [], None, None

    def _fail_waiting(self, message: str) -> None:
        with self._cond:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for handle in waiting:
            self.metrics.queue_depth.labels(model=handle.model.id).dec()
            handle.push(Failed(message))


def sample_row(logits: Any, params: Any, generator: Any, greedy: int) -> int:
    """One token from one row's float32 logits at params.temperature (>= GREEDY_BELOW)
    and params.top_p. log_softmax subtracts the max first, so no exp overflows; if the
    distribution still is not finite (a row of -inf, an inf logit), greedy's token."""
    logprobs = torch.log_softmax(logits / params.temperature, dim=-1)
    probs = logprobs.exp()
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
        return greedy
    if params.top_p < 1.0:
        # Keep the smallest set of tokens whose mass reaches top_p (the first token
        # always stays), as transformers' TopPLogitsWarper does.
        sorted_probs, order = probs.sort(descending=True)
        drop = sorted_probs.cumsum(0) - sorted_probs > params.top_p
        drop[0] = False
        sorted_probs[drop] = 0.0
        pick = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=generator))


def prefill_groups(rows: list[Any], mergeable: bool, waste: float = 1.25) -> list[list[Any]]:
    """Rows to prefill together: similar prompt lengths, so left padding adds at most
    `waste` - 1 of compute. Prefill is compute-bound (a 200-token prompt is already a
    large matmul), so one big padded batch of mixed lengths is slower than a few tight
    ones. A cache that cannot be joined needs a single group."""
    if not rows:
        return []
    if not mergeable:
        return [rows]
    groups: list[list[Any]] = []
    current: list[Any] = []
    for row in sorted(rows, key=lambda r: r.prompt_len):
        total = sum(r.prompt_len for r in current) + row.prompt_len
        if current and row.prompt_len * (len(current) + 1) > waste * total:
            groups.append(current)
            current = []
        current.append(row)
    groups.append(current)
    return groups
