"""Request bodies of the OpenAI API we serve, and the responses we build.

Fields and defaults follow the OpenAI API reference (Chat Completions and legacy
Completions); `ignore_eos` and `min_tokens` are vLLM's extra sampling parameters
(vllm/entrypoints/openai/protocol.py). Types are strict (JSON "5" is not 5; true is not
1), as OpenAI's own validation. Unknown fields are ignored, as vLLM does; fields we know
but cannot honour (n > 1, logprobs, tools, penalties...) are a 400 that says so, never
silently dropped.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_CONFIG = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class _Body(BaseModel):
    model_config = _CONFIG


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart]
    name: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """What chat and completions requests share."""

    model: str = Field(max_length=1000)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None)
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None


def unsupported(body: ChatCompletionRequest | CompletionRequest) -> tuple[str, str] | None:
    """(param, message) for the first feature asked for that this server lacks."""
    checks: list[tuple[str, bool, str]] = [
        ("n", (body.n or 1) > 1, "n > 1 is not supported: send n separate requests"),
        ("presence_penalty", bool(body.presence_penalty), "presence_penalty is not supported"),
        ("frequency_penalty", bool(body.frequency_penalty), "frequency_penalty is not supported"),
        ("logit_bias", bool(body.logit_bias), "logit_bias is not supported"),
        (
            "stream_options",
            body.stream_options is not None and not body.stream,
            "stream_options is only allowed when stream is true",
        ),
    ]
    if isinstance(body, ChatCompletionRequest):
        kind = (body.response_format or {}).get("type", "text")
        checks += [
            ("logprobs", bool(body.logprobs), "logprobs is not supported"),
            ("top_logprobs", body.top_logprobs is not None, "top_logprobs is not supported"),
            ("tools", bool(body.tools), "tools are not supported"),
            ("response_format", kind != "text", "only response_format type 'text' is supported"),
        ]
    else:
        checks += [
            ("echo", bool(body.echo), "echo is not supported"),
            ("logprobs", body.logprobs is not None, "logprobs is not supported"),
            ("best_of", (body.best_of or 1) > 1, "best_of > 1 is not supported"),
            ("suffix", body.suffix is not None, "suffix is not supported"),
        ]
    for param, asked, message in checks:
        if asked:
            return param, message
    return None


def message_text(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text for part in message.content)


# ---------------------------------------------------------------------------------------
# Responses: plain dicts (built per token while streaming, so no model validation).


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    rid: str, model: str, text: str, reason: str, prompt: int, completion: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
        ],
        "usage": usage(prompt, completion),
    }


def chat_chunk(
    rid: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    reason: str | None = None,
    with_usage: bool = False,
    counts: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One stream chunk; with include_usage every chunk has "usage": null and a last
    chunk has empty choices and the usage (OpenAI reference, stream_options)."""
    chunk: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }
    if with_usage:
        chunk["usage"] = usage(*counts) if counts else None
    return chunk


def text_completion(
    rid: str,
    model: str,
    created: int,
    text: str | None,
    reason: str | None,
    with_usage: bool = False,
    counts: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A legacy completion, or one of its stream chunks (same object, per the reference)."""
    body: dict[str, Any] = {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if text is None
        else [{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}],
    }
    if with_usage:
        body["usage"] = usage(*counts) if counts else None
    return body


def model_card(
    model_id: str, root: str, parent: str | None, max_model_len: int, created: int
) -> dict[str, Any]:
    """vLLM's ModelCard (vllm/entrypoints/openai/protocol.py): a LoRA module is listed
    with `root` = its path and `parent` = the base model's id."""
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "recipe",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
    }
