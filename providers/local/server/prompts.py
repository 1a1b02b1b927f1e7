"""A request body to what the engine needs: prompt token ids and sampling parameters,
checked against the server's limits (OpenAI's messages and error wording where it has
them)."""

from __future__ import annotations

from typing import Any

from providers.local.server import schemas
from providers.local.server.errors import APIError
from providers.local.server.gate import ServingState
from providers.local.server.handles import SamplingParams
from providers.local.server.models import ServedModel

MAX_STOP = 16
# A token is at most this many characters long for the budget below, even when the
# vocabulary's longest token is shorter: generous, so that no prompt that fits is refused.
MIN_CHARS_PER_TOKEN = 16


def char_budget(tokenizer: Any, context: int) -> int:
    """The most characters a prompt of `context` tokens can have: context times the
    longest token (in characters, at least MIN_CHARS_PER_TOKEN). Every character of the
    text is in some token (byte-level BPE and SentencePiece with byte fallback drop
    none), so a longer prompt cannot fit and is refused without tokenizing it."""
    try:
        longest = max((len(token) for token in tokenizer.get_vocab()), default=0)
    except Exception:  # a tokenizer without a vocabulary listing: the bound alone
        longest = 0
    return context * max(longest, MIN_CHARS_PER_TOKEN)


def too_long(chars: int, budget: int, context: int, param: str) -> APIError:
    return APIError(
        400,
        f"This model's maximum context length is {context} tokens. However, your "
        f"{param} has {chars} characters, more than {budget} (what {context} tokens can "
        "hold at most). Please reduce the length of the prompt.",
        param=param,
        code="context_length_exceeded",
    )


def sampling(
    body: schemas.ChatCompletionRequest | schemas.CompletionRequest,
    prompt_len: int,
    state: ServingState,
    default_max: int,
) -> SamplingParams:
    config, context = state.config, state.loaded.max_model_len
    problem = schemas.unsupported(body)
    if problem:
        raise APIError(400, problem[1], param=problem[0], code="unsupported_parameter")
    param, asked = "max_tokens", body.max_tokens
    if isinstance(body, schemas.ChatCompletionRequest) and body.max_completion_tokens:
        param, asked = "max_completion_tokens", body.max_completion_tokens
    if asked is not None and asked > config.max_tokens_limit:
        raise APIError(
            400,
            f"{param} is {asked}; this server allows at most {config.max_tokens_limit} "
            "(its max_tokens_limit)",
            param=param,
            code="invalid_value",
        )
    room = context - prompt_len
    if room < 1 or (asked is not None and asked > room):
        # OpenAI's wording for context_length_exceeded.
        wanted = prompt_len + (asked or 0)
        raise APIError(
            400,
            f"This model's maximum context length is {context} tokens. However, you "
            f"requested {wanted} tokens ({prompt_len} in the prompt, {asked or 0} in the "
            "completion). Please reduce the length of the prompt or completion.",
            param="messages" if isinstance(body, schemas.ChatCompletionRequest) else "prompt",
            code="context_length_exceeded",
        )
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > MAX_STOP:
        raise APIError(400, f"at most {MAX_STOP} stop sequences", param="stop")
    max_tokens = asked if asked is not None else min(default_max, room)
    if body.min_tokens > max_tokens:
        raise APIError(400, "min_tokens is larger than max_tokens", param="min_tokens")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=tuple(s for s in stop if s),
        ignore_eos=body.ignore_eos,
        min_tokens=body.min_tokens,
    )


def encode_chat(
    served: ServedModel, messages: list[schemas.ChatMessage], context: int, budget: int
) -> list[int]:
    """The prompt's token ids (slow for a long prompt: call it off the event loop).
    `budget`: char_budget(); messages with more characters are refused untokenized."""
    tokenizer = served.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise APIError(400, f"{served.id} has no chat template; use /v1/completions", param="model")
    conversation = [
        {"role": "system" if m.role == "developer" else m.role, "content": schemas.message_text(m)}
        for m in messages
    ]
    chars = sum(len(m["content"]) for m in conversation)
    if chars > budget:
        raise too_long(chars, budget, context, "messages")
    try:
        text = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    except Exception as exc:  # a template may raise on a role order it does not allow
        raise APIError(
            400, f"the model's chat template rejected these messages: {exc}", param="messages"
        ) from None
    return list(ids)


def encode_prompt(
    served: ServedModel, prompt: str | list[str] | list[int], context: int, budget: int
) -> list[int]:
    """As encode_chat, for /v1/completions: text, or token ids checked against the vocabulary."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise APIError(
                400, "one prompt per request: send the others separately", param="prompt"
            )
        prompt = prompt[0]
    if isinstance(prompt, str) and len(prompt) > budget:
        raise too_long(len(prompt), budget, context, "prompt")
    if isinstance(prompt, str):
        try:
            ids = list(served.tokenizer(prompt)["input_ids"])
        except Exception:
            raise APIError(400, "the prompt cannot be tokenized", param="prompt") from None
    else:
        ids = list(prompt)  # token ids, as OpenAI accepts
        vocab = len(served.tokenizer)
        if any(not 0 <= i < vocab for i in ids):
            raise APIError(400, f"token ids must be in [0, {vocab})", param="prompt")
    if not ids:
        raise APIError(400, "the prompt is empty", param="prompt")
    return ids
