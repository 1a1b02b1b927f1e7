"""`key=value` overrides from the command line, applied to the raw recipe before validation."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from recipes.errors import Problem, RecipeInputError, path_str, shorten
from recipes.source import YamlSyntaxError, parse_document

_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True)
class Override:
    text: str  # as typed, for error messages
    path: tuple[str, ...]
    value: Any


def parse_overrides(items: list[str]) -> list[Override]:
    """Parse `training.epochs=1`-style arguments; values are read as YAML scalars."""
    out: list[Override] = []
    problems: list[Problem] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        path = tuple(key.split("."))
        if not sep or not set(key.lower()) <= _KEY_CHARS or "" in path:
            problems.append(
                Problem(
                    "expected key=value with a dotted key (e.g. training.epochs=1), "
                    f"got '{shorten(item)}'",
                    file="command line",
                )
            )
            continue
        try:
            value = parse_document(raw, "command line").data if raw.strip() else ""
        except YamlSyntaxError:
            value = raw  # not YAML: keep the text, validation judges it
        except RecipeInputError as exc:  # YAML we refuse: a tag, deep nesting, an alias bomb
            problems += [
                Problem(
                    f"{p.message} (from '{shorten(item, 60, count=False)}')",
                    file="command line",
                    field=path_str(path) + (f".{p.field}" if p.field else ""),
                    hint=p.hint,
                )
                for p in exc.problems
            ]
            continue
        out.append(Override(text=item, path=path, value=value))
    if problems:
        raise RecipeInputError(problems)
    return out


def apply_overrides(data: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """A copy of `data` with each override set, creating intermediate sections."""
    result = copy.deepcopy(data)
    for override in overrides:
        node = result
        for part in override.path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[override.path[-1]] = override.value
    return result
