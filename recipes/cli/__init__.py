"""`recipe`: validate, plan, run and follow fine-tunes from one YAML recipe.

A thin layer over the use cases in recipes.app, split by command group: runs.py
(validate, plan, run, status, logs, cancel, runs, providers, schema, export),
data.py (`recipe data`), cluster.py (`recipe cluster`), endpoint.py (`recipe serve`,
`recipe endpoint`), release.py (`recipe release`), cost.py (`recipe cost`), infra.py (`recipe infra`); render.py
and render_cost.py print.

Exit codes: 0 ok · 1 the run failed or a gate failed · 2 bad input or usage ·
3 a provider or cloud error (a missing extra included: the message names the pip install).
"""

from __future__ import annotations

import typer

from recipes.cli import cluster, cost, data, endpoint, infra, release, runs

app = typer.Typer(
    name="recipe",
    help=(
        "Fine-tune LLMs from one YAML recipe: on this machine (offline) or on managed clouds.\n\n"
        "Start with:  recipe validate recipes/catalog/quickstart.yaml\n\n"
        "then:        recipe run recipes/catalog/quickstart.yaml --provider local --wait\n\n"
        "Clouds:      recipe plan recipes/catalog/support-triage-a100.yaml --provider aws "
        "(or azure, gcp): the exact requests, hardware, tags and cost, offline\n\n"
        "Serve:       recipe serve RUN_ID (OpenAI API here); recipe endpoint deploy RUN_ID "
        "(on the run's cloud); recipe release RUN_ID (canary, gates, rollback)\n\n"
        "Cost:        recipe cost report BILLING_DATA --by cost_center,month (billing exports "
        "or cost APIs; estimate vs actual per run)\n\n"
        "Account:     recipe infra plan|apply|check --provider aws (bucket, identity, key, "
        "budget, billing export)\n\n"
        "Exit codes: 0 ok, 1 run or gate failed, 2 bad input, 3 provider or cloud error "
        "(a missing extra too)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
runs.register(app)
app.add_typer(data.app, name="data")
app.add_typer(cluster.app, name="cluster")
app.command()(endpoint.serve)
app.add_typer(endpoint.app, name="endpoint")
app.command()(release.release)
app.add_typer(cost.app, name="cost")
app.add_typer(infra.app, name="infra")


def main() -> None:
    app()
