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
from recipes.errors import (
    Problem,
    RecipeInputError,
    did_you_mean,
    path_str,
    short_repr,
    shorten,
)
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


def load_recipe(
    path: str | Path, overrides: list[str] | None = None, check_files: bool = True
) -> LoadedRecipe:
    """A recipe validated in full; `check_files=False` does not require its local data
    files to exist (a platform team setting up an account holds only the YAML)."""
    path = Path(path)
    source = load_yaml(path)
    parsed = parse_overrides(overrides or [])
    if not isinstance(source.data, dict):
        raise RecipeInputError(source.problem((), "a recipe must be a mapping of sections"))
    data = apply_overrides(source.data, parsed)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        blame = _Blame(source, parsed, path.parent)
        raise RecipeInputError(_problems(exc, blame, data)) from None
    findings = rules.check(recipe, path.parent, files=check_files)
    if findings:
        blame = _Blame(source, parsed, path.parent)
        raise RecipeInputError([blame.locate(path_, message) for path_, message in findings])
    return LoadedRecipe(
        recipe=recipe,
        path=path,
        overrides=tuple(o.text for o in parsed),
        source=source,
        parsed_overrides=tuple(parsed),
    )


def recipe_hash(recipe: Recipe) -> str:
    """Hash of the values that differ from the schema's defaults: writing a default out
    changes nothing, and a new optional field in a later version keeps every run id."""
    values = recipe.model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
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
    if base.startswith((".", "/", "~")) or _is_dir(base_dir / base):
        model = recipe.model.model_copy(update={"base": absolute(base)})
    else:
        model = recipe.model
    return recipe.model_copy(update={"data": data, "eval": evaluation, "model": model})


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a hub id too long to be a file name
        return False


# --- pydantic errors -> located problems -------------------------------------------------


def _problems(exc: ValidationError, blame: _Blame, data: dict[str, Any]) -> list[Problem]:
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
        problems.append(blame.locate(path, message, hint))
    return problems


class _Blame:
    """Who caused a problem: the file (at its line) or an override (on the command line).

    An override is to blame for a problem at or under the key it sets, under a section
    only it created (`compute.aws.hyperpod.cluster=x` when the file has no compute.aws),
    and for any problem the file alone does not have (`training.micro_batch_size=3`
    makes the file's batch_size of 16 wrong). Never an unrelated line of the file.
    """

    def __init__(
        self,
        source: Source,
        overrides: list[Override],
        base_dir: Path,
        compare_with_file: bool = True,
    ):
        self.source = source
        self.overrides = overrides
        self.base_dir = base_dir
        # Only for what the loader checks: a provider's plan problem is not the file's
        # or an override's fault just because the file alone passes the schema.
        self.compare_with_file = compare_with_file
        self._file_paths: set[PathKey] | None = None

    def locate(self, path: PathKey, message: str, hint: str | None = None) -> Problem:
        override = self._culprit(path)
        if override is None:
            return self.source.problem(path, message, hint)
        return Problem(
            f"{message} (from '{shorten(override.text, 60, count=False)}')",
            file="command line",
            field=path_str(path),
            hint=hint,
        )

    def _culprit(self, path: PathKey) -> Override | None:
        if not self.overrides:
            return None
        for override in reversed(self.overrides):
            if tuple(path[: len(override.path)]) == override.path:
                return override
        for override in reversed(self.overrides):
            root = _created_root(self.source.data, override.path)
            if tuple(path[: len(root)]) == root:
                return override
        if not self.compare_with_file or path in self.file_paths():
            return None
        # The file alone is fine there: the override nearest to the field is the cause.
        return max(reversed(self.overrides), key=lambda o: _common_prefix(o.path, path))

    def file_paths(self) -> set[PathKey]:
        """Where the file alone, without overrides, has problems."""
        if self._file_paths is None:
            data = self.source.data
            try:
                recipe = Recipe.model_validate(data)
            except ValidationError as exc:
                self._file_paths = {_clean_path(e["loc"], data) for e in exc.errors()}
                self._file_paths |= {(*p, "kind") for p in self._file_paths}
            else:
                self._file_paths = {p for p, _ in rules.check(recipe, self.base_dir)}
        return self._file_paths


def _created_root(data: Any, path: tuple[str, ...]) -> tuple[str, ...]:
    """The shallowest section on `path` that the file lacks (an override creates it)."""
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            return path[: i + 1]
        node = child
    return path


def _common_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _locate(
    source: Source,
    overrides: list[Override],
    path: PathKey,
    message: str,
    hint: str | None = None,
) -> Problem:
    blame = _Blame(source, overrides, Path(source.file).parent, compare_with_file=False)
    return blame.locate(path, message, hint)


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
        return "unknown field", did_you_mean(str(path[-1])[:100], choices) if choices else None
    if kind == "missing":
        return "required field is missing", None
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        found = str(ctx.get("tag"))
        return (
            f"unknown kind {short_repr(found)}; expected one of {', '.join(tags)}",
            did_you_mean(found[:100], tags),
        )
    if kind == "union_tag_not_found":
        return "missing 'kind' (lora, qlora or full)", None
    if kind == "literal_error":
        expected = [
            e.strip(" '") for e in str(ctx.get("expected", "")).replace(" or ", ",").split(",")
        ]
        given = error.get("input")
        return (
            f"got {short_repr(given)}; expected one of {', '.join(e for e in expected if e)}",
            did_you_mean(str(given)[:100], expected),
        )
    if kind == "string_pattern_mismatch" and path == ("name",):
        return "must be lowercase letters, digits and dashes, starting with a letter or digit", None
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    given = error.get("input")
    if kind not in ("model_type", "dict_type") and not isinstance(given, dict | list):
        message += f"; got {short_repr(given)}"
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
