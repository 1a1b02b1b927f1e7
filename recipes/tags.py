"""Tags: the recipe's tags plus run identity, checked against a policy and mapped
to each cloud's rules.

A mapping may only change what the cloud cannot store (a character it forbids
becomes `_`; GCP labels are lower-cased); anything that would lose meaning
(a truncation, a reserved prefix, two tags becoming one, too many tags) is an
error that names the tag. The plan shows the final tags and every rename.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recipes.errors import Problem, RecipeInputError

POLICY_ENV = "RECIPE_TAG_POLICY"


@dataclass(frozen=True)
class TagRules:
    cloud: str
    max_tags: int
    max_key: int
    max_value: int
    key_chars: str  # regex character class of allowed characters (^... = forbidden ones)
    value_chars: str
    reserved_prefixes: tuple[str, ...] = ()
    lowercase: bool = False
    key_must_start_with_letter: bool = False
    replacement: str = "_"


# https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html
AWS = TagRules(
    cloud="aws",
    max_tags=50,
    max_key=128,
    max_value=256,
    key_chars=r"\w\s.:/=+\-@",
    value_chars=r"\w\s.:/=+\-@",
    reserved_prefixes=("aws:",),
)
# https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources
AZURE = TagRules(
    cloud="azure",
    max_tags=50,
    max_key=512,
    max_value=256,
    key_chars=r"^<>%&\\?/",
    value_chars=r"\s\S",
    reserved_prefixes=("microsoft", "azure", "windows"),
)
# https://cloud.google.com/resource-manager/docs/labels-overview
GCP = TagRules(
    cloud="gcp",
    max_tags=64,
    max_key=63,
    max_value=63,
    key_chars=r"a-z0-9_\-",
    value_chars=r"a-z0-9_\-",
    lowercase=True,
    key_must_start_with_letter=True,
)
# Kubernetes annotations (HyperPod manifests): the name part of a key is <= 63 of these.
K8S_ANNOTATIONS = TagRules(
    cloud="kubernetes",
    max_tags=64,
    max_key=63,
    max_value=256,
    key_chars=r"A-Za-z0-9_.\-",
    value_chars=r"\s\S",
)


@dataclass(frozen=True)
class TagMapping:
    tags: dict[str, str]
    renamed: dict[str, str] = field(default_factory=dict)  # "key=value" as written -> as sent


def map_tags(tags: dict[str, str], rules: TagRules) -> TagMapping:
    problems: list[Problem] = []
    out: dict[str, str] = {}
    origin: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for key, value in tags.items():
        new_key, new_value = (
            _clean(key, rules.key_chars, rules),
            _clean(value, rules.value_chars, rules),
        )
        where = f"tags.{key}"
        if not new_key:
            problems.append(Problem(f"the key is empty on {rules.cloud}", field=where))
            continue
        if any(new_key.lower().startswith(p) for p in rules.reserved_prefixes):
            problems.append(
                Problem(
                    f"{rules.cloud} reserves keys starting with {rules.reserved_prefixes}",
                    field=where,
                )
            )
        if rules.key_must_start_with_letter and not new_key[0].isalpha():
            problems.append(
                Problem(f"{rules.cloud} label keys must start with a letter", field=where)
            )
        if len(new_key) > rules.max_key:
            problems.append(
                Problem(f"key longer than {rules.max_key} characters on {rules.cloud}", field=where)
            )
        if len(new_value) > rules.max_value:
            problems.append(
                Problem(
                    f"value longer than {rules.max_value} characters on {rules.cloud} "
                    "(it would be cut, losing meaning)",
                    field=where,
                )
            )
        if new_key in out:
            problems.append(
                Problem(
                    f"becomes '{new_key}' on {rules.cloud}, the same as tags.{origin[new_key]}",
                    field=where,
                )
            )
            continue
        out[new_key], origin[new_key] = new_value, key
        if (new_key, new_value) != (key, value):
            renamed[f"{key}={value}"] = f"{new_key}={new_value}"
    if len(out) > rules.max_tags:
        problems.append(
            Problem(f"{len(out)} tags; {rules.cloud} allows at most {rules.max_tags}", field="tags")
        )
    if problems:
        raise RecipeInputError(problems)
    return TagMapping(tags=out, renamed=renamed)


def _clean(text: str, allowed: str, rules: TagRules) -> str:
    if rules.lowercase:
        text = text.lower()
    # `allowed` is a character class; a leading ^ lists the forbidden characters instead.
    forbidden = f"[{allowed[1:]}]" if allowed.startswith("^") else f"[^{allowed}]"
    return re.sub(forbidden, rules.replacement, text)


# --- policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagPolicy:
    """Keys every recipe must carry, and (optionally) the values each may take."""

    required: tuple[str, ...] = ()
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_file(cls, path: Path) -> TagPolicy:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RecipeInputError(
                Problem(f"cannot read the tag policy: {exc}", file=str(path))
            ) from None
        unknown = set(data) - {"required", "allowed"}
        if unknown or not isinstance(data.get("required", []), list):
            raise RecipeInputError(
                Problem(
                    "expected `required: [keys]` and optionally `allowed: {key: [values]}`",
                    file=str(path),
                )
            )
        allowed = {
            str(k): tuple(str(v) for v in vs) for k, vs in (data.get("allowed") or {}).items()
        }
        return cls(tuple(str(k) for k in data.get("required", [])), allowed, str(path))

    @classmethod
    def from_env(cls) -> TagPolicy | None:
        path = os.environ.get(POLICY_ENV)
        return cls.from_file(Path(path)) if path else None

    def check(self, tags: dict[str, str]) -> None:
        problems = [
            Problem(f"the tag policy ({self.source}) requires this tag", field=f"tags.{key}")
            for key in self.required
            if not tags.get(key)
        ]
        for key, values in self.allowed.items():
            if key in tags and tags[key] not in values:
                problems.append(
                    Problem(
                        f"'{tags[key]}' is not allowed by the tag policy ({self.source})",
                        field=f"tags.{key}",
                        hint="one of " + ", ".join(values),
                    )
                )
        if problems:
            raise RecipeInputError(problems)
