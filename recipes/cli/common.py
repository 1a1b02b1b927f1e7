"""What every command group shares: error handling, output formats, common options.

Kept import-light on purpose: `recipe --help` and `recipe validate` must never
import torch, transformers or a cloud SDK. Use cases load inside commands.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from recipes.errors import ProviderError, RecipeInputError

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_PROVIDER = 0, 1, 2, 3


class Format(str, enum.Enum):
    text = "text"
    json = "json"


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn the typed errors into one message on stderr and the contract's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RecipeInputError as exc:
            err(exc.render())
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except ProviderError as exc:
            err(f"error: {exc}")
            raise typer.Exit(EXIT_PROVIDER) from None

    return wrapper  # type: ignore[return-value]


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


FileArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
ProviderOpt = Annotated[
    str,
    typer.Option(
        "--provider",
        "-p",
        help="Backend: local (this machine), aws (SageMaker), azure (Azure ML), gcp (Vertex AI).",
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides such as training.epochs=1 data.max_seq_len=256, validated like the file.",
        show_default=False,
    ),
]
RunIdArg = Annotated[str, typer.Argument(help="Run id, as printed by `recipe run`.")]
