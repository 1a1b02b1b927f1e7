"""Rules that span several fields; each returns (field path, message) pairs.

They run after the schema accepted the recipe, so they can rely on types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from recipes.errors import shorten
from recipes.schema import Recipe

Finding = tuple[tuple[str, ...], str]
Rule = Callable[[Recipe, Path], Iterator[Finding]]

URI_SCHEMES = ("s3://", "gs://", "azureml://", "https://", "http://")


def is_remote(location: str) -> bool:
    return location.startswith(URI_SCHEMES)


def batch_divides(recipe: Recipe, _: Path) -> Iterator[Finding]:
    t = recipe.training
    if t.batch_size % t.micro_batch_size:
        yield (
            ("training", "batch_size"),
            f"must be a multiple of micro_batch_size ({t.micro_batch_size}); got {t.batch_size}",
        )


def warmup_once(recipe: Recipe, _: Path) -> Iterator[Finding]:
    t = recipe.training
    if t.warmup_ratio is not None and t.warmup_steps is not None:
        yield (("training", "warmup_steps"), "give warmup_ratio or warmup_steps, not both")


def qlora_needs_cuda(recipe: Recipe, _: Path) -> Iterator[Finding]:
    if recipe.method.kind == "qlora":
        if recipe.compute.accelerator == "cpu":
            yield (
                ("method", "kind"),
                "qlora needs a CUDA GPU (bitsandbytes 4-bit); set compute.accelerator "
                "to a GPU such as A10G or use kind: lora",
            )
        elif recipe.compute.local.device == "cpu":
            yield (("compute", "local", "device"), "qlora cannot run with device: cpu")


def gpus_match_accelerator(recipe: Recipe, _: Path) -> Iterator[Finding]:
    c = recipe.compute
    if c.accelerator == "cpu" and c.gpus_per_node:
        yield (("compute", "gpus_per_node"), "must be 0 when accelerator is cpu")
    if c.accelerator != "cpu" and not c.gpus_per_node:
        yield (("compute", "gpus_per_node"), f"must be at least 1 for accelerator {c.accelerator}")


def gates_have_inputs(recipe: Recipe, _: Path) -> Iterator[Finding]:
    gates = recipe.eval.gates
    if (gates.macro_f1_min is not None or gates.exact_match_min is not None) and not (
        recipe.eval.golden
    ):
        yield (("eval", "gates"), "golden-set gates need eval.golden")
    if gates.macro_f1_min is not None and recipe.eval.task == "exact_match":
        yield (("eval", "gates", "macro_f1_min"), "macro-F1 needs task classification or auto")
    if (gates.json_valid_min is not None or recipe.eval.json_schema) and recipe.eval.task != "json":
        yield (("eval", "task"), "json_schema and json_valid_min need task: json")
    if gates.valid_loss_max is not None and recipe.data.validation is None:
        yield (("eval", "gates", "valid_loss_max"), "needs validation data (data.validation)")


def early_stopping_needs_validation(recipe: Recipe, _: Path) -> Iterator[Finding]:
    if recipe.training.early_stopping_patience and recipe.data.validation is None:
        yield (
            ("training", "early_stopping_patience"),
            "needs validation data (data.validation)",
        )


def replicas_ordered(recipe: Recipe, _: Path) -> Iterator[Finding]:
    d = recipe.deploy
    if d and d.min_replicas > d.max_replicas:
        yield (
            ("deploy", "min_replicas"),
            f"must not exceed max_replicas ({d.max_replicas}); got {d.min_replicas}",
        )


def local_files_exist(recipe: Recipe, base_dir: Path) -> Iterator[Finding]:
    files = {
        ("data", "train"): recipe.data.train,
        ("data", "validation"): recipe.data.validation,
        ("eval", "golden"): recipe.eval.golden,
        ("eval", "json_schema"): recipe.eval.json_schema,
    }
    for path, location in files.items():
        if not isinstance(location, str) or is_remote(location):
            continue
        try:
            resolved = (base_dir / location).expanduser()
            is_file = resolved.is_file()
        except (OSError, RuntimeError, ValueError) as exc:  # ~nobody/x, a name too long
            yield path, f"not a usable path ({getattr(exc, 'strerror', None) or exc})"
            continue
        if resolved.is_dir():
            yield path, f"is a directory, expected a file: {shorten(str(resolved), 200)}"
        elif not is_file:
            yield path, f"file not found: {shorten(str(resolved), 200)}"


def local_model_path(recipe: Recipe, base_dir: Path) -> Iterator[Finding]:
    base = recipe.model.base
    if not base.startswith((".", "/", "~")):
        return
    try:
        (base_dir / base).expanduser().is_dir()
    except (OSError, RuntimeError, ValueError) as exc:
        yield ("model", "base"), f"not a usable path ({getattr(exc, 'strerror', None) or exc})"


RULES: tuple[Rule, ...] = (
    batch_divides,
    warmup_once,
    qlora_needs_cuda,
    gpus_match_accelerator,
    gates_have_inputs,
    early_stopping_needs_validation,
    replicas_ordered,
    local_files_exist,
    local_model_path,
)


def check(recipe: Recipe, base_dir: Path, files: bool = True) -> list[Finding]:
    """Every rule's findings; `files=False` leaves out whether the data files exist (for
    commands that never read them, such as `recipe infra`)."""
    rules = RULES if files else tuple(r for r in RULES if r is not local_files_exist)
    return [finding for rule in rules for finding in rule(recipe, base_dir)]
