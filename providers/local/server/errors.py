"""OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} with an HTTP status.

Types follow the OpenAI API reference (error codes guide): `invalid_request_error` for
400/404, `authentication_error` for 401, `rate_limit_error` for 429 (with Retry-After),
`server_error` for 500/503. Validation failures are 400, as vLLM and OpenAI answer, not
FastAPI's default 422. Bodies are rendered with ensure_ascii: a message may quote client
input, and a lone surrogate in it must not break the response.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or default_type(status)
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> Response:
        return json_response(self.body(), self.status, self.headers)


def default_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return Response(text, status_code=status, headers=headers, media_type="application/json")


def quote(value: str, limit: int = 200) -> str:
    """Client input quoted in a message: bounded, so a huge value stays readable."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
