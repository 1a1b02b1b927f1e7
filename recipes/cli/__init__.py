"""`recipe`: validate, plan, run and follow fine-tunes from one YAML recipe.

Kept import-light on purpose: `recipe --help` and `recipe validate` must never
import torch, transformers or a cloud SDK. Heavy modules load inside commands.

Exit codes: 0 ok · 1 the run failed or a gate failed · 2 bad input or usage ·
3 a provider or cloud error.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from providers.base import Provider, RunRef, RunStatus

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_PROVIDER = 0, 1, 2, 3

app = typer.Typer(
    name="recipe",
    help=(
        "Fine-tune LLMs from one YAML recipe: on this machine (offline) or on managed clouds.\n\n"
        "Start with:  recipe validate recipes/catalog/quickstart.yaml\n\n"
        "then:        recipe run recipes/catalog/quickstart.yaml --provider local --wait\n\n"
        "Clouds:      recipe plan recipes/catalog/support-triage-a100.yaml --provider aws "
        "(or azure, gcp): the exact requests, hardware, tags and cost, offline\n\n"
        "Exit codes: 0 ok, 1 run or gate failed, 2 bad input, 3 provider or cloud error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, enum.Enum):
    text = "text"
    json = "json"


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn known errors into one message on stderr and the contract's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from providers.base import ProviderError
        from recipes.errors import RecipeInputError

        try:
            return func(*args, **kwargs)
        except RecipeInputError as exc:
            _err(exc.render())
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except ProviderError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(EXIT_PROVIDER) from None

    return wrapper  # type: ignore[return-value]


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# --- arguments shared by commands -------------------------------------------------------

FileArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
ProviderOpt = Annotated[
    str,
    typer.Option(
        "--provider",
        "-p",
        help="Backend: local (this machine), aws (SageMaker), azure (Azure ML), gcp (Vertex AI).",
    ),
]
AttemptOpt = Annotated[
    int,
    typer.Option(
        "--attempt",
        min=1,
        help="Cloud job attempt to plan (job names are <recipe>-<hash8>-<attempt>).",
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


# --- commands ----------------------------------------------------------------------------


@app.command()
@handle_errors
def validate(
    files: Annotated[
        list[str],
        typer.Argument(help="Recipe files, optionally followed by key=value overrides."),
    ],
) -> None:
    """Check recipes against the schema and cross-field rules; exit 2 listing every problem.

    With RECIPE_TAG_POLICY=policy.yaml (`required: [keys]`, `allowed: {key: [values]}`)
    the recipe's tags are checked against it too."""
    from recipes.errors import RecipeInputError
    from recipes.loader import load_recipe

    paths = [f for f in files if "=" not in f]
    overrides = [f for f in files if "=" in f]
    if not paths:
        raise RecipeInputError("FILE: give at least one recipe file")
    from recipes.tags import TagPolicy

    policy = TagPolicy.from_env()
    problems = []
    for path in paths:
        try:
            loaded = load_recipe(path, overrides)
            if policy is not None:
                try:
                    policy.check(dict(loaded.recipe.tags))
                except RecipeInputError as exc:
                    raise loaded.locate(exc) from None
        except RecipeInputError as exc:
            problems += exc.problems
            continue
        print(f"ok: {path} ({loaded.recipe.name}, {loaded.recipe.method.kind})")
    if problems:
        raise RecipeInputError(problems)


@app.command()
@handle_errors
def plan(
    file: FileArg,
    overrides: OverridesArg = None,
    provider: ProviderOpt = "local",
    attempt: AttemptOpt = 1,
    output: FormatOpt = Format.text,
) -> None:
    """Show exactly what `run` would send: request bodies, compute, tags, estimate. No network."""
    _, _, the_plan = _prepare(file, overrides or [], provider, attempt=attempt)
    if output == Format.json:
        _emit_json(the_plan.to_dict())
    else:
        from recipes import render

        render.plan(the_plan)


@app.command()
@handle_errors
def run(
    file: FileArg,
    overrides: OverridesArg = None,
    provider: ProviderOpt = "local",
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the run to its end.")] = False,
    override_budget: Annotated[
        bool,
        typer.Option(
            "--override-budget", help="Launch even if the estimate exceeds budget.max_usd."
        ),
    ] = False,
    new_attempt: Annotated[
        bool,
        typer.Option(
            "--new-attempt",
            help="Cloud: launch again although this recipe content already has a job.",
        ),
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Launch a fine-tune; prints the run id (with --wait, follows it and prints results).

    On a cloud the job name is derived from the recipe's content: running the same
    recipe again reports the existing job instead of launching a second one."""
    from providers.base import State
    from recipes.budget import check_budget
    from recipes.ledger import Ledger
    from recipes.preflight import check_local_data

    loaded, backend, the_plan = _prepare(file, overrides or [], provider, attempt=1)
    check_budget(loaded, the_plan, override_budget)
    check_local_data(loaded.resolved())  # bad rows cost no job and leave nothing behind
    if new_attempt and backend.capabilities.idempotent:
        latest = backend.latest_attempt(the_plan)  # type: ignore[attr-defined]
        _, _, the_plan = _prepare(file, overrides or [], provider, attempt=latest + 1)
    ref = backend.submit(the_plan)
    ledger = Ledger()
    if ref.ids.get("existing"):
        ids = {k: v for k, v in ref.ids.items() if k != "existing"}
        ref = type(ref)(provider=ref.provider, run_id=ref.run_id, ids=ids)
        ledger.record(ref, loaded.recipe.name, str(file), State.QUEUED)
        current = backend.status(ref)
        ledger.update_state(ref.run_id, current.state)
        if output == Format.json:
            _emit_json(
                {
                    "run_id": ref.run_id,
                    "provider": ref.provider,
                    "status": current.state.value,
                    "existing": True,
                }
            )
        else:
            print(ref.run_id)
            _err(
                f"{ref.run_id} already exists for this recipe content ({current.state.value}); "
                "nothing launched. Use --new-attempt to launch again."
            )
        return
    ledger.record(ref, loaded.recipe.name, str(file), State.QUEUED)
    if not wait:
        if output == Format.json:
            _emit_json({"run_id": ref.run_id, "provider": ref.provider, "status": "queued"})
        else:
            print(ref.run_id)
            _err(f"follow it: recipe logs {ref.run_id} --follow   ·   recipe status {ref.run_id}")
        return
    if output == Format.text:
        _err(f"run {ref.run_id} started on {ref.provider} (Ctrl-C cancels it)")
    final = _follow(backend, ref, ledger, show_progress=output == Format.text)
    _finish(final, output)


@app.command()
@handle_errors
def status(run_id: RunIdArg, output: FormatOpt = Format.text) -> None:
    """State, progress, metrics and artifacts of a run; the log tail when it failed."""
    backend, ref, ledger = _lookup(run_id)
    current = backend.status(ref)
    ledger.update_state(run_id, current.state)
    if output == Format.json:
        _emit_json(current.to_dict())
    else:
        from recipes import render

        render.status(current)
    if current.state.value == "failed":
        raise typer.Exit(EXIT_RUN_FAILED)


@app.command()
@handle_errors
def logs(
    run_id: RunIdArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing until the run ends.")
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Print a run's training log (JSON: one {"run_id", "line"} object per line)."""
    backend, ref, _ = _lookup(run_id)
    try:
        for line in backend.logs(ref, follow=follow):
            if output == Format.json:
                line = json.dumps({"run_id": run_id, "line": line.rstrip("\n")}) + "\n"
            sys.stdout.write(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass  # stops following; the run goes on


@app.command()
@handle_errors
def cancel(run_id: RunIdArg, output: FormatOpt = Format.text) -> None:
    """Stop a run (its whole process tree or cloud job) and mark it cancelled."""
    backend, ref, ledger = _lookup(run_id)
    final = backend.cancel(ref)
    ledger.update_state(run_id, final.state)
    if output == Format.json:
        _emit_json(final.to_dict())
    else:
        print(f"{run_id}: {final.state.value}" + (f" ({final.message})" if final.message else ""))


@app.command()
@handle_errors
def runs(
    output: FormatOpt = Format.text,
    limit: Annotated[int, typer.Option(help="How many of the newest runs.")] = 20,
) -> None:
    """List runs launched from here (newest first), refreshing the unfinished ones."""
    from providers.registry import get_provider
    from recipes.ledger import Ledger

    ledger = Ledger()
    rows = []
    for entry in ledger.list(limit):
        state = entry.state
        if not state.terminal:
            try:
                state = get_provider(entry.ref.provider).status(entry.ref).state
                ledger.update_state(entry.ref.run_id, state)
            except Exception as exc:  # a listing must not die on one unreachable run
                _err(f"warning: {entry.ref.run_id}: {exc}")
        rows.append(
            {
                "run_id": entry.ref.run_id,
                "provider": entry.ref.provider,
                "recipe": entry.recipe_name,
                "state": state.value,
                "created_at": entry.created_at,
            }
        )
    if output == Format.json:
        _emit_json(rows)
    else:
        from recipes import render

        render.runs(rows)


@app.command()
@handle_errors
def providers(output: FormatOpt = Format.text) -> None:
    """Each backend: its extra installed?, credentials found here?, and what it can do."""
    from dataclasses import asdict

    from providers.inventory import inventory

    entries = inventory()
    if output == Format.json:
        _emit_json([asdict(e) for e in entries])
        return
    for e in entries:
        installed = "installed" if e.installed else f"missing: pip install '.[{e.extra}]'"
        print(f"{e.name:<6} extra {e.extra}: {installed}; credentials: {e.credentials}")
        caps = e.capabilities
        can = [k for k in ("spot", "multi_node", "hyperpod", "idempotent") if caps.get(k)]
        print(
            f"       methods {', '.join(caps['methods'])}; "
            f"accelerators {', '.join(caps['accelerators']) or 'this machine'}; "
            f"data {', '.join(caps['remote_data']) or 'local files'}; "
            f"{', '.join(can) or 'single node'}"
        )


@app.command()
def schema() -> None:
    """Print the recipe JSON Schema (point your editor's YAML plugin at it)."""
    from recipes.schema import Recipe

    _emit_json(Recipe.model_json_schema())


@app.command()
@handle_errors
def export(
    run_id: RunIdArg,
    merge: Annotated[bool, typer.Option(help="Merge the adapter into the base weights.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: in the run directory)."),
    ] = None,
    output: FormatOpt = Format.text,
) -> None:
    """Write a finished run's adapter, or a merged model, and report validation loss
    with the adapter and after the merge."""
    from recipes.errors import RecipeInputError

    _, ref, _ = _lookup(run_id)
    if "run_dir" not in ref.ids:
        raise RecipeInputError(
            f"RUN_ID: export works on local runs; {run_id} ran on {ref.provider}"
        )
    import contextlib

    from training_scripts.export import export as run_export
    from training_scripts.modeling import SetupError

    try:
        # The training code logs progress to stdout; keep stdout for the result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_export(Path(ref.ids["run_dir"]), merge, out)
    except SetupError as exc:
        raise RecipeInputError(f"RUN_ID: {exc}") from None
    if output == Format.json:
        _emit_json(result)
        return
    print(f"wrote {result['output']}")
    print(f"valid_loss with adapter: {result['valid_loss_with_adapter']:.5f}")
    if merge:
        print(
            f"valid_loss merged:       {result['valid_loss_merged']:.5f} "
            f"(difference {result['difference']:+.2e})"
        )


# --- data ------------------------------------------------------------------------------

data_app = typer.Typer(
    help="Check data files, and preview exactly which tokens a recipe trains on.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

RecipeOpt = Annotated[
    Path | None,
    typer.Option(
        "--recipe",
        "-r",
        help="Take format, pii policy, max_seq_len, train_on and the tokenizer from this recipe.",
    ),
]


@data_app.command("check")
@handle_errors
def data_check(
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
    import tempfile

    from recipes import datacheck, render
    from recipes.sources import local_copy

    settings = _data_settings(recipe)
    tokenizer = datacheck.load_tokenizer(settings.base)
    with tempfile.TemporaryDirectory(prefix="recipe-data-") as scratch:
        reports = []
        for location in files:
            report = datacheck.check(local_copy(location, Path(scratch)), settings, tokenizer)
            report.file = location  # name the file as the user did, not the temporary copy
            reports.append(report)
    if output == Format.json:
        _emit_json([r.to_dict() for r in reports])
    else:
        render.data_reports(reports, tokenizer is not None)
    failing = any(r.errors or (strict and r.warnings) for r in reports)
    if failing:
        raise typer.Exit(EXIT_BAD_INPUT)


@data_app.command("preview")
@handle_errors
def data_preview(
    file: Annotated[Path, typer.Argument(help="JSONL file.")],
    recipe: RecipeOpt = None,
    count: Annotated[int, typer.Option("--count", "-n", help="How many examples.")] = 3,
) -> None:
    """Show examples as the model sees them, trained tokens marked ⟦like this⟧."""
    from recipes import datacheck, render
    from recipes.errors import RecipeInputError
    from training_scripts.rows import DataError, read_examples

    settings = _data_settings(recipe)
    tokenizer = datacheck.load_tokenizer(settings.base)
    if tokenizer is None:
        raise RecipeInputError("preview needs the train extra: pip install '.[train]'")
    try:
        examples = read_examples(file, settings.format)[:count]
    except DataError as exc:
        raise RecipeInputError([_row_problem(p) for p in exc.problems]) from None
    for example in examples:
        render.preview(
            example.line, datacheck.preview_segments(example, tokenizer, settings.train_on)
        )


def _data_settings(recipe: Path | None) -> Any:
    from recipes.datacheck import Settings
    from recipes.loader import load_recipe

    return Settings.from_recipe(load_recipe(recipe).resolved() if recipe else None)


def _row_problem(problem: Any) -> Any:
    from recipes.errors import Problem

    return Problem(problem.message, file=problem.file, line=problem.line)


# --- HyperPod clusters --------------------------------------------------------------------

cluster_app = typer.Typer(
    help="SageMaker HyperPod clusters for recipes with compute.aws.target: hyperpod.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("plan")
@handle_errors
def cluster_plan(file: FileArg, output: FormatOpt = Format.text) -> None:
    """Show the CreateCluster request the recipe implies. No network."""
    request = _cluster_request(file)[1]
    if output == Format.json:
        _emit_json({"api": request.api, "body": request.body})
    else:
        print(f"{request.api}\n{json.dumps(request.body, indent=2)}")


@cluster_app.command("create")
@handle_errors
def cluster_create(file: FileArg, output: FormatOpt = Format.text) -> None:
    """Create the recipe's HyperPod cluster (instance group, lifecycle scripts, EKS)."""
    from providers.aws import AwsProvider
    from providers.aws_hyperpod import create_cluster

    region, request = _cluster_request(file)
    answer = create_cluster(AwsProvider(), region, request)
    if output == Format.json:
        _emit_json({"cluster_arn": answer["ClusterArn"]})
    else:
        print(answer["ClusterArn"])
        _err(f"follow it: recipe cluster status {file}")


@cluster_app.command("status")
@handle_errors
def cluster_status(file: FileArg, output: FormatOpt = Format.text) -> None:
    """The cluster's state, instance groups and nodes."""
    from providers.aws import AwsProvider
    from providers.aws_hyperpod import describe_cluster

    region, request = _cluster_request(file)
    info = describe_cluster(AwsProvider(), region, request.body["ClusterName"])
    if output == Format.json:
        _emit_json(info)
        return
    print(f"{info['name']}  {info['status']}" + (f"  {info['failure']}" if info["failure"] else ""))
    for group in info["instance_groups"]:
        print(
            f"  group {group['name']}: {group['instance_type']} {group['current']}/{group['target']}"
        )
    for node in info["nodes"]:
        print(f"  node  {node['id']}  {node['type']}  {node['status']}")


@cluster_app.command("delete")
@handle_errors
def cluster_delete(
    file: FileArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the recipe's HyperPod cluster and its nodes."""
    from providers.aws import AwsProvider
    from providers.aws_hyperpod import delete_cluster

    region, request = _cluster_request(file)
    name = request.body["ClusterName"]
    if not yes and not typer.confirm(f"delete HyperPod cluster {name} in {region}?"):
        raise typer.Exit(EXIT_BAD_INPUT)
    delete_cluster(AwsProvider(), region, name)
    print(f"{name}: deleting")


def _cluster_request(file: Path) -> Any:
    from providers.aws_hyperpod import cluster_request
    from providers.base import RunIdentity
    from recipes.errors import RecipeInputError
    from recipes.loader import load_recipe

    loaded = load_recipe(file)
    recipe = loaded.resolved()
    identity = RunIdentity(run_id="", recipe_name=recipe.name, recipe_hash=loaded.content_hash)
    try:
        request = cluster_request(recipe, identity)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None
    return recipe.compute.aws.region, request


# --- helpers -----------------------------------------------------------------------------


def _prepare(file: Path, overrides: list[str], provider: str, attempt: int = 1) -> Any:
    from providers.base import RunIdentity
    from providers.cloud import cloud_identity
    from providers.registry import get_provider
    from recipes.errors import RecipeInputError
    from recipes.loader import load_recipe
    from recipes.runid import new_run_id
    from recipes.tags import TagPolicy

    loaded = load_recipe(file, overrides)
    backend = get_provider(provider)
    recipe = loaded.resolved()
    if backend.capabilities.idempotent:
        identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    else:
        identity = RunIdentity(new_run_id(recipe.name), recipe.name, loaded.content_hash)
    try:
        policy = TagPolicy.from_env()
        if policy is not None:
            policy.check(dict(recipe.tags))
        the_plan = backend.plan(recipe, identity)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None
    return loaded, backend, the_plan


def _lookup(run_id: str) -> tuple[Provider, RunRef, Any]:
    from providers.registry import get_provider
    from recipes.ledger import Ledger

    ledger = Ledger()
    entry = ledger.get(run_id)
    return get_provider(entry.ref.provider), entry.ref, ledger


def _follow(backend: Provider, ref: RunRef, ledger: Any, show_progress: bool) -> RunStatus:
    from recipes import render

    try:
        final = render.follow(backend, ref, show_progress)
    except KeyboardInterrupt:
        _err(f"\ncancelling {ref.run_id} ...")
        final = backend.cancel(ref)
    ledger.update_state(ref.run_id, final.state)
    return final


def _finish(final: RunStatus, output: Format) -> None:
    if output == Format.json:
        _emit_json(
            {
                "run_id": final.run_id,
                "provider": final.provider,
                "status": final.state.value,
                "metrics": final.metrics,
                "artifacts": final.artifacts,
            }
        )
    else:
        from recipes import render

        render.result(final)
    if final.state.value != "succeeded":
        raise typer.Exit(EXIT_RUN_FAILED)


def main() -> None:
    app()
