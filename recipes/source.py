"""YAML loading that remembers where every node came from.

pydantic reports errors by field path; to point users at the line they wrote,
we compose the YAML node graph ourselves and keep a map path -> (line, column).
Duplicate keys, which plain YAML loaders silently overwrite, are reported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipes.errors import Problem, RecipeInputError, path_str

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


def load_yaml(path: Path) -> Source:
    """Read a YAML file into a Source; any syntax error is a located Problem."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeInputError(Problem("file not found", file=name)) from None
    except UnicodeDecodeError as exc:
        raise RecipeInputError(Problem(f"not UTF-8 text (byte {exc.start})", file=name)) from None
    except OSError as exc:
        raise RecipeInputError(Problem(f"cannot read: {exc.strerror}", file=name)) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> Source:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise RecipeInputError(
            Problem(
                f"invalid YAML: {reason}",
                file=name,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            )
        ) from None
    source = Source(file=name, data=None)
    if node is None:
        source.data = {}
        return source
    problems: list[Problem] = []
    source.data = _convert(node, (), source, problems)
    if problems:
        raise RecipeInputError(problems)
    return source


def _convert(node: yaml.Node, path: PathKey, source: Source, problems: list[Problem]) -> Any:
    source.positions[path] = _position(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                message = "a key must be a plain word, not a list or mapping"
                problems.append(_problem_at(key_node, source, path, message))
                continue
            key = str(_scalar(key_node))
            child = (*path, key)
            if key in out:
                message = "duplicate key (the earlier value would be silently ignored)"
                problems.append(_problem_at(key_node, source, child, message))
                continue
            out[key] = _convert(value_node, child, source, problems)
            # Point errors about a key at the key itself, where the user typed it.
            source.positions[child] = _position(key_node)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), source, problems) for i, item in enumerate(node.value)]
    return _scalar(node)


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _problem_at(node: yaml.Node, source: Source, path: PathKey, message: str) -> Problem:
    line, column = _position(node)
    return Problem(
        message, file=source.file, line=line, column=column, field=path_str(path) or None
    )


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)
