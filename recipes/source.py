"""YAML loading that remembers where every node came from.

pydantic reports errors by field path; to point users at the line they wrote,
we compose the YAML node graph ourselves and keep a map path -> (line, column).
Duplicate keys, which plain YAML loaders silently overwrite, are reported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipes.errors import Problem, RecipeInputError, path_str, short_repr, shorten

PathKey = tuple[str | int, ...]


@dataclass
class Source:
    """A parsed document plus the position of each node (1-based line, column)."""

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathKey) -> tuple[int | None, int | None]:
        """Position of the deepest node on `path` that exists in the file."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos:
                return pos
        return None, None

    def problem(self, path: PathKey, message: str, hint: str | None = None) -> Problem:
        line, column = self.locate(path)
        return Problem(
            message=message,
            file=self.file,
            line=line,
            column=column,
            field=path_str(path) or None,
            hint=hint,
        )


# Bounds that keep a hostile or broken file from hanging the CLI or exhausting memory.
# A real recipe is a few kilobytes, a handful of levels deep and a few hundred values.
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # nesting of lists and mappings
MAX_VALUES = 20_000  # values after expanding aliases (a "billion laughs" needs billions)

# The only tags a document may carry (resolved implicitly or written as `!!str`,
# `!!int`...): plain scalars, lists and mappings. Anything else (`!!python/...`,
# `!!binary`, `!!set`, `!custom`) is refused, never constructed.
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map")
}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class YamlSyntaxError(RecipeInputError):
    """The text is not YAML at all (as opposed to YAML we refuse to read)."""


def load_yaml(path: Path) -> Source:
    """Read a YAML file into a Source; any syntax error is a located Problem."""
    name = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise RecipeInputError(
                Problem(f"larger than {MAX_BYTES // (1024 * 1024)} MiB; not a recipe", file=name)
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeInputError(Problem("file not found", file=name)) from None
    except IsADirectoryError:
        raise RecipeInputError(Problem("is a directory; expected a YAML file", file=name)) from None
    except (OSError, ValueError) as exc:  # permissions, a name too long, a NUL in the name
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RecipeInputError(Problem(f"cannot read: {reason}", file=name)) from None
    return parse_yaml(decode(raw, name), name)


def decode(raw: bytes, name: str) -> str:
    """UTF-8 text, or a Problem at the line and column of the first bad byte."""
    if raw.startswith(_UTF16_BOMS) or (len(raw) > 1 and b"\x00" in raw[:2]):
        raise RecipeInputError(
            Problem("the file is UTF-16 (or UTF-32) text; save it as UTF-8", file=name)
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeInputError(
            Problem(
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                file=name,
                line=line,
                column=column,
                hint="save the file as UTF-8",
            )
        ) from None


def parse_yaml(text: str, name: str) -> Source:
    """A document's data (an empty document is an empty mapping) and positions."""
    source = parse_document(text, name)
    if source.data is None:
        source.data = {}
    return source


def parse_document(text: str, name: str) -> Source:
    """Any YAML document, read as safely as a recipe (None when it is empty).

    Raises YamlSyntaxError when the text is not YAML, RecipeInputError for YAML that
    is refused (tags, nesting, alias bombs, unreadable values)."""
    try:
        node = _compose(text)
    except _TooDeep as exc:
        raise RecipeInputError(
            Problem(
                f"nested more than {MAX_DEPTH} levels deep",
                file=name,
                line=exc.mark.line + 1,
                column=exc.mark.column + 1,
            )
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise YamlSyntaxError(
            Problem(
                f"invalid YAML: the character U+{exc.character:04X} is not allowed",
                file=name,
                line=line,
                column=column,
            )
        ) from None
    except ValueError:  # `%YAML 1.999…`: the scanner's int() past the digit limit
        raise YamlSyntaxError(
            Problem("invalid YAML: a %YAML directive with too many digits", file=name, line=1)
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlSyntaxError(
            Problem(
                f"invalid YAML: {reason}",
                file=name,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            )
        ) from None
    source = Source(file=name, data=None)
    if node is None:
        return source
    problems: list[Problem] = []
    try:
        source.data = _Converter(source, problems).convert(node, ())
    except _TooMany as exc:
        raise RecipeInputError(
            _problem_at(
                exc.node,
                source,
                (),
                f"more than {MAX_VALUES:,} values once aliases (*name) are expanded; "
                "a recipe needs a few hundred",
            )
        ) from None
    if problems:
        raise RecipeInputError(problems)
    return source


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark):
        self.mark = mark


class _TooMany(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer with a bound on nesting (its recursion would overflow the stack)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:  # type: ignore[override]
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            if self._depth >= MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _Converter:
    """Node graph -> plain data, recording positions; aliases are expanded with a bound."""

    def __init__(self, source: Source, problems: list[Problem]):
        self.source = source
        self.problems = problems
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooMany(node)
        self.source.positions[path] = _position(node)
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(
                _problem_at(
                    node,
                    self.source,
                    path,
                    f"the YAML tag {_tag(node)} is not allowed",
                    hint="write plain values, lists and mappings",
                )
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                message = "a key must be a plain word, not a list or mapping"
                self.problems.append(_problem_at(key_node, self.source, path, message))
                continue
            self.count += 1
            key = str(self._scalar(key_node, path))
            child = (*path, key)
            if key in out:
                message = "duplicate key (the earlier value would be silently ignored)"
                self.problems.append(_problem_at(key_node, self.source, child, message))
                continue
            out[key] = self.convert(value_node, child)
            # Point errors about a key at the key itself, where the user typed it.
            self.source.positions[child] = _position(key_node)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        if node.tag not in _PLAIN_TAGS:
            message = f"the YAML tag {_tag(node)} is not allowed"
            self.problems.append(_problem_at(node, self.source, path, message))
            return None
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
            # `!!int abc`, a 5000-digit integer, a date like 2024-13-45...
            kind = _tag(node)
            if "digits" in str(exc):
                message = f"{short_repr(node.value, 20)} has more digits than a number may have"
            else:
                message = f"{short_repr(node.value)} is not a valid {kind}"
            self.problems.append(_problem_at(node, self.source, path, message))
            return None
        if isinstance(value, str) and _SURROGATE.search(value):
            message = (
                f"not valid Unicode text: {short_repr(value)} holds a lone surrogate "
                "(a \\ud800-\\udfff escape or bytes that are not UTF-8)"
            )
            self.problems.append(_problem_at(node, self.source, path, message))
            return None
        return value


def _tag(node: yaml.Node) -> str:
    """A tag as it is written: tag:yaml.org,2002:binary -> !!binary."""
    return shorten(node.tag.replace("tag:yaml.org,2002:", "!!"), 60)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _problem_at(
    node: yaml.Node, source: Source, path: PathKey, message: str, hint: str | None = None
) -> Problem:
    line, column = _position(node)
    return Problem(
        message,
        file=source.file,
        line=line,
        column=column,
        field=path_str(path) or None,
        hint=hint,
    )
