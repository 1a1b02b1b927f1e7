"""Load a recipe file (plus command-line overrides) into a validated, frozen `Recipe`.

Every problem in a file is reported at once, each located at the YAML node that
caused it, or at the command-line override that set it.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from recipes import rules
from recipes.errors import Problem, RecipeInputError, did_you_mean, path_str
from recipes.overrides import Override, apply_overrides, parse_overrides
from recipes.schema import Recipe
from recipes.source import PathKey, Source, load_yaml


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe and where it came from."""

    recipe: Recipe
    path: Path
    overrides: tuple[str, ...] = ()
    source: Source | None = None
    parsed_overrides: tuple[Override, ...] = ()

    def locate(self, error: RecipeInputError) -> RecipeInputError:
        """Give problems found later (by a provider's plan) the file position of their field."""
        if self.source is None:
            return error
        located = [
            _locate(
                self.source,
                list(self.parsed_overrides),
                tuple(p.field.split(".")),
                p.message,
                p.hint,
            )
            if p.field and p.file is None
            else p
            for p in error.problems
        ]
        return RecipeInputError(located)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolved(self) -> Recipe:
        """The recipe with local paths made absolute, as jobs and plans see it."""
        return resolve_paths(self.recipe, self.base_dir)

    @property
    def content_hash(self) -> str:
        """Stable hash of what the recipe means, not how the YAML was written nor where
        the checkout lives (paths are hashed as written, relative to the recipe)."""
        return recipe_hash(self.recipe)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> LoadedRecipe:
    path = Path(path)
    source = load_yaml(path)
    parsed = parse_overrides(overrides or [])
    if not isinstance(source.data, dict):
        raise RecipeInputError(source.problem((), "a recipe must be a mapping of sections"))
    data = apply_overrides(source.data, parsed)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeInputError(_problems(exc, source, parsed, data)) from None
    findings = rules.check(recipe, path.parent)
    if findings:
        raise RecipeInputError(
            [_locate(source, parsed, path_, message) for path_, message in findings]
        )
    return LoadedRecipe(
        recipe=recipe,
        path=path,
        overrides=tuple(o.text for o in parsed),
        source=source,
        parsed_overrides=tuple(parsed),
    )


def recipe_hash(recipe: Recipe) -> str:
    canonical = json.dumps(recipe.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_paths(recipe: Recipe, base_dir: Path) -> Recipe:
    def absolute(location: str | float | None) -> Any:
        if not isinstance(location, str) or rules.is_remote(location):
            return location
        return str((base_dir / location).expanduser().resolve())

    data = recipe.data.model_copy(
        update={
            "train": absolute(recipe.data.train),
            "validation": absolute(recipe.data.validation),
        }
    )
    evaluation = recipe.eval.model_copy(
        update={
            "golden": absolute(recipe.eval.golden),
            "json_schema": absolute(recipe.eval.json_schema),
        }
    )
    base = recipe.model.base
    if base.startswith((".", "/", "~")) or (base_dir / base).is_dir():
        model = recipe.model.model_copy(update={"base": absolute(base)})
    else:
        model = recipe.model
    return recipe.model_copy(update={"data": data, "eval": evaluation, "model": model})


# --- pydantic errors -> located problems -------------------------------------------------


def _problems(
    exc: ValidationError, source: Source, overrides: list[Override], data: dict[str, Any]
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[PathKey, str]] = set()
    for error in exc.errors(include_url=False):
        path = _clean_path(error["loc"], data)
        message, hint = _message(error, path, data)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, "kind")
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(_locate(source, overrides, path, message, hint))
    return problems


def _locate(
    source: Source,
    overrides: list[Override],
    path: PathKey,
    message: str,
    hint: str | None = None,
) -> Problem:
    for override in reversed(overrides):
        if tuple(path[: len(override.path)]) == override.path:
            return Problem(
                f"{message} (from '{override.text}')",
                file="command line",
                field=path_str(path),
                hint=hint,
            )
    return source.problem(path, message, hint)


def _clean_path(loc: tuple[Any, ...], data: Any) -> PathKey:
    """Drop the tags pydantic inserts for discriminated unions (method.lora.r -> method.r)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue
        out.append(part)
        node = (
            node.get(part)
            if isinstance(node, dict)
            else (
                node[part]
                if isinstance(node, list) and isinstance(part, int) and part < len(node)
                else None
            )
        )
    return tuple(out)


def _message(error: dict[str, Any], path: PathKey, data: Any) -> tuple[str, str | None]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        choices = _field_names(path[:-1], data)
        return "unknown field", did_you_mean(str(path[-1]), choices) if choices else None
    if kind == "missing":
        return "required field is missing", None
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        found = ctx.get("tag")
        return (
            f"unknown kind '{found}'; expected one of {', '.join(tags)}",
            did_you_mean(str(found), tags),
        )
    if kind == "union_tag_not_found":
        return "missing 'kind' (lora, qlora or full)", None
    if kind == "literal_error":
        expected = [
            e.strip(" '") for e in str(ctx.get("expected", "")).replace(" or ", ",").split(",")
        ]
        given = error.get("input")
        return (
            f"got {given!r}; expected one of {', '.join(e for e in expected if e)}",
            did_you_mean(str(given), expected),
        )
    if kind == "string_pattern_mismatch" and path == ("name",):
        return "must be lowercase letters, digits and dashes, starting with a letter or digit", None
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    given = error.get("input")
    if kind not in ("model_type", "dict_type") and not isinstance(given, dict | list):
        message += f"; got {given!r}"
    return message, None


def _field_names(path: PathKey, data: Any) -> list[str]:
    """Names a section at `path` accepts, for "did you mean" on unknown keys."""
    model: Any = Recipe
    node = data
    for part in path:
        if isinstance(part, int):
            return []
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        node = node.get(part) if isinstance(node, dict) else None
        if field is None:
            return []
        model = _section_type(field.annotation, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _section_type(annotation: Any, node: Any) -> Any:
    """The BaseModel an annotation holds, choosing the union member named by `kind`."""
    candidates = [
        a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)
    ]
    if len(candidates) > 1 and isinstance(node, dict):
        for cand in candidates:
            kind_field = cand.model_fields.get("kind")
            if kind_field and node.get("kind") in typing.get_args(kind_field.annotation):
                return cand
    return candidates[0] if candidates else None


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _flatten(args[0])
    return [leaf for arg in args for leaf in _flatten(arg)]
