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
from dataclasses import dataclass, field, replace
from pathlib import Path

from recipes.errors import Problem, RecipeInputError, did_you_mean, short_repr
from recipes.source import load_yaml

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
    key_shape: str | None = None  # a regex the whole (cleaned) key must match
    replacement: str = "_"


# AWS: botocore's sagemaker service model, TagKey/TagValue pattern
# `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`, key 1-128, value 0-256, TagList <= 50; "aws:" is reserved
# (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html). Python's re has no
# \p{...}: \w is \p{L}\p{N}_, and \p{Z} is spelled out (Zs, Zl, Zp; Unicode 15). Not \s:
# it also takes tab, newline and the other control characters AWS refuses.
_AWS_SEPARATORS = " \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
AWS = TagRules(
    cloud="aws",
    max_tags=50,
    max_key=128,
    max_value=256,
    key_chars=r"\w" + _AWS_SEPARATORS + r".:/=+\-@",
    value_chars=r"\w" + _AWS_SEPARATORS + r".:/=+\-@",
    reserved_prefixes=("aws:",),
)
# S3 objects take at most 10 tags (botocore's s3 model, PutObjectTagging: "Amazon S3 limits
# the maximum number of tags to 10 tags per object").
S3_OBJECT_MAX_TAGS = 10
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
# Kubernetes annotations (HyperPod manifests): a key's name part is a qualified name,
# <= 63 characters, alphanumeric at both ends (apimachinery validation.IsQualifiedName:
# ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]).
K8S_ANNOTATIONS = TagRules(
    cloud="kubernetes",
    max_tags=64,
    max_key=63,
    max_value=256,
    key_chars=r"A-Za-z0-9_.\-",
    value_chars=r"\s\S",
    key_shape=r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?",
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
        if rules.key_shape and not re.fullmatch(rules.key_shape, new_key):
            problems.append(
                Problem(
                    f"{rules.cloud} keys must start and end with a letter or digit",
                    field=where,
                )
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

_POLICY_SHAPE = "a tag policy is `required: [keys]` and optionally `allowed: {key: [values]}`"


def _is_word(value: object) -> bool:
    """A tag key or value as YAML gives it: text or a number (`cost_center: 4711`)."""
    if isinstance(value, bool) or value is None:
        return False
    return isinstance(value, str | int | float) and str(value).strip() != ""


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return short_repr(value)


@dataclass(frozen=True)
class TagPolicy:
    """Keys every recipe must carry, and (optionally) the values each may take."""

    required: tuple[str, ...] = ()
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_file(cls, path: Path) -> TagPolicy:
        """Read a policy file; any problem is located in it (the file is named in each)."""
        source = load_yaml(path)  # refuses what a recipe refuses: tags, bombs, bad UTF-8
        data = source.data
        if not isinstance(data, dict):
            raise RecipeInputError(
                source.problem((), f"expected a mapping; {_POLICY_SHAPE}; got {_kind(data)}")
            )
        problems: list[Problem] = []
        for key in data:
            if key not in ("required", "allowed"):
                hint = did_you_mean(key, ("required", "allowed"))
                problems.append(source.problem((key,), f"unknown key; {_POLICY_SHAPE}", hint))
        required = data.get("required") or []
        if not isinstance(required, list):
            problems.append(
                source.problem(("required",), f"expected a list of tag keys; got {_kind(required)}")
            )
            required = []
        for i, key in enumerate(required):
            if not _is_word(key):
                problems.append(
                    source.problem(("required", i), f"expected a tag key; got {_kind(key)}")
                )
        allowed = data.get("allowed") or {}
        if not isinstance(allowed, dict):
            problems.append(
                source.problem(
                    ("allowed",),
                    f"expected a mapping of tag key to allowed values; got {_kind(allowed)}",
                )
            )
            allowed = {}
        for key, values in allowed.items():
            if not isinstance(values, list) or not values:
                problems.append(
                    source.problem(
                        ("allowed", key),
                        f"expected a list of allowed values (e.g. [dev, prod]); got {_kind(values)}",
                    )
                )
                continue
            for i, value in enumerate(values):
                if not _is_word(value):
                    problems.append(
                        source.problem(
                            ("allowed", key, i), f"expected a tag value; got {_kind(value)}"
                        )
                    )
        if problems:
            raise RecipeInputError(problems)
        return cls(
            tuple(str(k) for k in required),
            {str(k): tuple(str(v) for v in vs) for k, vs in allowed.items()},
            str(path),
        )

    @classmethod
    def from_env(cls) -> TagPolicy | None:
        path = os.environ.get(POLICY_ENV)
        if not path or not path.strip():
            return None
        try:
            return cls.from_file(Path(path))
        except RecipeInputError as exc:
            named = f"the tag policy named by {POLICY_ENV}"
            raise RecipeInputError(
                [replace(p, hint=f"{p.hint}; {named}" if p.hint else named) for p in exc.problems]
            ) from None

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
