"""`recipe data`: check data files, and preview exactly which tokens a recipe trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recipes.cli.common import EXIT_BAD_INPUT, Format, FormatOpt, emit_json, handle_errors

app = typer.Typer(
    help="Check data files, and preview exactly which tokens a recipe trains on.",
    no_args_is_help=True,
)

RecipeOpt = Annotated[
    Path | None,
    typer.Option(
        "--recipe",
        "-r",
        help="Take format, pii policy, max_seq_len, train_on and the tokenizer from this recipe.",
    ),
]


@app.command("check")
@handle_errors
def check(
    files: Annotated[
        list[str], typer.Argument(help="JSONL files: local paths, s3://, gs:// or azureml:// URIs.")
    ],
    recipe: RecipeOpt = None,
    strict: Annotated[
        bool, typer.Option(help="Treat warnings (duplicates, over-long rows) as errors.")
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Check every row; report each problem with its line; print token statistics. Exit 2 on errors."""
    from recipes.app import data as use
    from recipes.cli import render

    result = use.check(files, recipe)
    if output == Format.json:
        emit_json([r.to_dict() for r in result.reports])
    else:
        render.data_reports(result.reports, result.with_tokens)
    if result.failing(strict):
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command("preview")
@handle_errors
def preview(
    file: Annotated[Path, typer.Argument(help="JSONL file.")],
    recipe: RecipeOpt = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=100_000, help="How many examples.")
    ] = 3,
) -> None:
    """Show examples as the model sees them, trained tokens marked ⟦like this⟧."""
    from recipes.app import data as use
    from recipes.cli import render

    for example in use.preview(file, recipe, count):
        render.preview(example.line, example.segments)
