"""Reading training rows: three formats, every defect reported with its line.

Torch-free on purpose: the `recipe` CLI uses it to check data before anything is
launched, and the training script uses it inside the job.

Formats (`data.format`):
- chat: {"messages": [{"role", "content", ...}], "tools"?: [...]}   (OpenAI chat JSONL)
- prompt_completion: {"prompt": str, "completion": str}
- alpaca: {"instruction": str, "input"?: str, "output": str}
Every format may also carry "label" (used to stratify splits), "meta" (slices in
evaluation reports) and "id".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("chat", "prompt_completion", "alpaca")
ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "weight", "name", "tool_calls", "tool_call_id"}
COMMON_KEYS = {"label", "meta", "id"}
ROW_KEYS = {
    "chat": {"messages", "tools"} | COMMON_KEYS,
    "prompt_completion": {"prompt", "completion"} | COMMON_KEYS,
    "alpaca": {"instruction", "input", "output"} | COMMON_KEYS,
}


@dataclass(frozen=True)
class RowProblem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


class DataError(Exception):
    """A data file is wrong; names file and line. The job exits with code 2."""

    def __init__(self, problems: Sequence[RowProblem | str]):
        self.problems = [
            p if isinstance(p, RowProblem) else RowProblem("data", None, p) for p in problems
        ]
        shown = [str(p) for p in self.problems[:20]]
        more = len(self.problems) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, Any]]
    line: int
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None

    @property
    def target(self) -> str:
        """The expected answer: the last assistant message."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")

    @property
    def prompt_messages(self) -> list[dict[str, Any]]:
        """Everything before the last assistant message."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return self.messages[:last]


def read_examples(path: Path, fmt: str = "chat") -> list[Example]:
    """Every row as an Example, or a DataError listing every bad row."""
    examples, problems = parse_rows(path, fmt)
    if problems:
        raise DataError(problems)
    return examples


# Bounds on what one row may be: deeper JSON overflows the parser's stack (and the chat
# template's), and no training row needs more than a few levels.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def parse_rows(path: Path, fmt: str = "chat") -> tuple[list[Example], list[RowProblem]]:
    """The good rows and the problems of the bad ones (a row is good or reported, never both)."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], [RowProblem(name, None, "file not found")]
    except IsADirectoryError:
        return [], [RowProblem(name, None, "is a directory; expected a JSONL file")]
    except (OSError, ValueError) as exc:  # permissions, a name too long, a NUL in the name
        return [], [RowProblem(name, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}")]
    encoding = _wide_encoding(raw)
    if encoding:
        return [], [
            RowProblem(name, None, f"the file is {encoding} text; JSON Lines must be UTF-8")
        ]
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as some editors write
        raw = raw[3:]
    if not raw.strip():
        return [], [RowProblem(name, None, "no examples (the file is empty)")]
    examples: list[Example] = []
    problems: list[RowProblem] = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        if not chunk.strip():
            continue
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(RowProblem(name, number, f"not UTF-8 (byte {exc.start} of the line)"))
            continue
        row_problems, example = check_row(line, number, fmt)
        problems += [RowProblem(name, number, p) for p in row_problems]
        if example is not None and not row_problems:
            examples.append(example)
    return examples, problems


def _wide_encoding(raw: bytes) -> str | None:
    """UTF-16 or UTF-32, by byte order mark or by the NUL bytes ASCII text has in them."""
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            return encoding
    head = raw[:64]
    if len(head) >= 4 and head.count(0) * 4 >= len(head):
        return "UTF-32" if head[1:3] == b"\x00\x00" else "UTF-16"
    return None


def check_row(line: str, number: int, fmt: str = "chat") -> tuple[list[str], Example | None]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return [f"invalid JSON ({exc.msg} at column {exc.colno})"], None
    except RecursionError:
        return [f"JSON nested more than {MAX_DEPTH} levels deep"], None
    except ValueError:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        return ["invalid JSON: an integer with more digits than Python reads (4300)"], None
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"], None
    unusable = _unusable(row)
    if unusable:
        return [unusable], None
    problems = [
        f"unknown key {_short(key)} for format {fmt}" for key in row if key not in ROW_KEYS[fmt]
    ]
    if fmt == "chat":
        messages, more = _chat_messages(row)
    elif fmt == "prompt_completion":
        messages, more = _pair(row, "prompt", "completion")
    else:
        messages, more = _alpaca(row)
    problems += more
    if messages is None or problems:
        return problems, None
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    label = row.get("label")
    return [], Example(
        messages=messages,
        line=number,
        label=str(label) if label is not None else None,
        meta=meta,
        tools=row.get("tools"),
    )


def _unusable(row: dict[str, Any]) -> str | None:
    """What makes a row unusable whatever its format: too deep, or text that is not Unicode.

    A lone surrogate ("\ud800" escaped in JSON) parses, but cannot be encoded as UTF-8:
    the tokenizer, the chat template and every file it is written to would fail on it.
    """
    stack: list[tuple[Any, str, int]] = [(row, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"JSON nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return f"key {_short(key)}: not valid Unicode (a lone surrogate)"
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack += [(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        elif isinstance(value, str) and _SURROGATE.search(value):
            place = where if len(where) <= 80 else where[:80] + "…"
            return (
                f"{place}: not valid Unicode text, a lone surrogate "
                f"{_SURROGATE.search(value).group()!r} (the tokenizer cannot encode it)"
            )
    return None


def _short(value: Any, limit: int = 100) -> str:
    """repr() of a value from the data, bounded (a row can hold a megabyte in one key)."""
    if isinstance(value, str) and len(value) > limit:
        quoted = repr(value[:limit])
        return f"{quoted[0]}{quoted[1:-1][:limit]}…{quoted[-1]} ({len(value):,} characters)"
    try:
        text = repr(value)
    except ValueError:  # an int past the digit limit
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _chat_messages(row: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, list[str]]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, ["messages: missing or empty (expected a list of {role, content})"]
    problems: list[str] = []
    for i, message in enumerate(messages):
        problems += _message_problems(message, f"messages[{i}]")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("messages: no assistant message (nothing to learn)")
    if "tools" in row:
        problems += _tools_problems(row["tools"])
    return messages, problems


def _message_problems(message: Any, where: str) -> list[str]:
    if not isinstance(message, dict):
        return [f"{where}: expected an object"]
    problems = [f"{where}: unknown key {_short(key)}" for key in message if key not in MESSAGE_KEYS]
    role = message.get("role")
    if role is None:
        problems.append(f"{where}.role: missing")
    elif role not in ROLES:
        problems.append(f"{where}.role: {_short(role)} is not one of {', '.join(ROLES)}")
    content = message.get("content")
    has_calls = "tool_calls" in message
    if content is None and not has_calls:
        problems.append(f"{where}.content: missing")
    elif content is not None and not isinstance(content, str):
        problems.append(f"{where}.content: expected text, got {type(content).__name__}")
    elif not has_calls and not content.strip():
        problems.append(f"{where}.content: empty")
    if "weight" in message and (
        isinstance(message["weight"], bool) or message["weight"] not in (0, 1)
    ):
        problems.append(f"{where}.weight: must be 0 or 1, got {_short(message['weight'])}")
    if has_calls:
        problems += _tool_calls_problems(message["tool_calls"], f"{where}.tool_calls")
    return problems


def _tool_calls_problems(calls: Any, where: str) -> list[str]:
    if not isinstance(calls, list) or not calls:
        return [f"{where}: expected a non-empty list"]
    problems = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            problems.append(f"{where}[{i}].function.name: missing")
            continue
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except json.JSONDecodeError:
                problems.append(f"{where}[{i}].function.arguments: not valid JSON")
        elif not isinstance(arguments, dict):
            problems.append(f"{where}[{i}].function.arguments: expected a JSON string or object")
    return problems


def _tools_problems(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        return ["tools: expected a list of tool definitions"]
    problems = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            problems.append(f"tools[{i}].type: expected 'function'")
        elif not isinstance(function, dict) or not isinstance(function.get("name"), str):
            problems.append(f"tools[{i}].function.name: missing")
        elif "parameters" in function and not isinstance(function["parameters"], dict):
            problems.append(f"tools[{i}].function.parameters: expected a JSON schema object")
    return problems


def _text_field(
    row: dict[str, Any], key: str, required: bool = True
) -> tuple[str | None, list[str]]:
    value = row.get(key)
    if value is None:
        return None, [f"{key}: missing"] if required else []
    if not isinstance(value, str):
        return None, [f"{key}: expected text, got {type(value).__name__}"]
    if required and not value.strip():
        return None, [f"{key}: empty"]
    return value, []


def _pair(row: dict[str, Any], prompt_key: str, answer_key: str) -> tuple[list | None, list[str]]:
    prompt, p1 = _text_field(row, prompt_key)
    answer, p2 = _text_field(row, answer_key)
    if p1 or p2:
        return None, p1 + p2
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], []


def _alpaca(row: dict[str, Any]) -> tuple[list | None, list[str]]:
    instruction, p1 = _text_field(row, "instruction")
    extra, p2 = _text_field(row, "input", required=False)
    output, p3 = _text_field(row, "output")
    if p1 or p2 or p3:
        return None, p1 + p2 + p3
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}], []
