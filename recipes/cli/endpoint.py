"""`recipe serve` (an OpenAI-compatible server here) and `recipe endpoint` (plan, deploy,
status, invoke, delete, list on any backend). Each command calls one use case of
recipes.app.endpoints and renders its result."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from recipes.cli.common import Format, FormatOpt, OverridesArg, emit_json, err, handle_errors
from recipes.errors import Problem, RecipeInputError

API_KEY_ENV = "RECIPE_SERVE_API_KEY"

app = typer.Typer(
    help=(
        "OpenAI-compatible endpoints from a finished run, on the backend it was trained on.\n\n"
        "  recipe endpoint plan RUN_ID        exact requests and monthly cost, nothing created\n\n"
        "  recipe endpoint deploy RUN_ID      create it (a second deploy creates nothing)\n\n"
        "  recipe endpoint invoke NAME 'Hi'   one chat request, the answer printed\n\n"
        "The recipe's deploy: block says how (endpoint name, accelerator, replicas, merge)."
    ),
    no_args_is_help=True,
)

ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--provider", "-p", help="Backend (default: where the run was trained).", show_default=False
    ),
]
RecipeOpt = Annotated[
    Path | None,
    typer.Option(
        "--recipe",
        help="Recipe whose deploy: block to use (default: the file the run was launched from).",
        show_default=False,
    ),
]
EndpointArg = Annotated[str, typer.Argument(help="Endpoint name (deploy.endpoint).")]
RunArg = Annotated[str, typer.Argument(help="Run id, as printed by `recipe run`.")]


# --- recipe serve ----------------------------------------------------------------------------


@handle_errors
def serve(
    source: Annotated[
        str,
        typer.Argument(
            help="A local run id, a run directory, a model directory (full model or PEFT "
            "adapter), builtin:tiny-chat, or a hub id already in the local cache.",
            show_default=False,
        ),
    ],
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            "--adapter", help="Another LoRA adapter on the same base: NAME=PATH (repeatable)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; not loopback needs an API key.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    max_batch: Annotated[
        int, typer.Option(min=1, max=256, help="Most requests decoded together.")
    ] = 16,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Waiting requests beyond which the server answers 429.")
    ] = 64,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            min=16, help="Longest prompt plus answer (default: the model's).", show_default=False
        ),
    ] = None,
) -> None:
    """Serve a fine-tune here behind the OpenAI API: /v1/models, /v1/chat/completions
    (streaming too), /v1/completions, /health, /metrics.

    The API key, when wanted, comes from RECIPE_SERVE_API_KEY (never a flag: flags show
    in the process list); clients send it as `Authorization: Bearer KEY`.

      recipe serve RUN_ID
      python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8000/v1',
      api_key='-'); print(c.chat.completions.create(model='quickstart',
      messages=[{'role': 'user', 'content': 'My card was stolen'}]).choices[0].message.content)"
    """
    from recipes.app import endpoints as use

    use.serve(
        source,
        adapters=_adapters(adapter or []),
        host=host,
        port=port,
        api_key=os.environ.get(API_KEY_ENV) or None,
        max_batch=max_batch,
        max_queue=max_queue,
        max_model_len=max_model_len,
        on_ready=lambda url: err(f"serving at {url}/v1 (Ctrl-C drains and stops)"),
    )


def _adapters(values: list[str]) -> dict[str, str]:
    adapters: dict[str, str] = {}
    for value in values:
        name, path = _pair(value)
        if name in adapters:
            raise RecipeInputError(
                Problem(f"adapter '{name}' is given twice", field="--adapter", hint="one NAME each")
            )
        adapters[name] = path
    return adapters


def _pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise RecipeInputError(
            Problem(
                f"'{text}' is not NAME=PATH", field="--adapter", hint="e.g. triage=runs/x/adapter"
            )
        )
    return name, path


# --- recipe endpoint -------------------------------------------------------------------------


@app.command("plan")
@handle_errors
def plan(
    run_id: RunArg,
    overrides: OverridesArg = None,
    provider: ProviderOpt = None,
    recipe: RecipeOpt = None,
    output: FormatOpt = Format.text,
) -> None:
    """Show exactly what `deploy` would send, the instance and the monthly cost. Creates nothing."""
    from recipes.app import endpoints as use

    the_plan = use.prepare(run_id, provider, recipe, overrides).plan
    if output == Format.json:
        emit_json(the_plan.to_dict())
    else:
        from recipes.cli import render

        render.endpoint_plan(the_plan)


@app.command("deploy")
@handle_errors
def deploy(
    run_id: RunArg,
    overrides: OverridesArg = None,
    provider: ProviderOpt = None,
    recipe: RecipeOpt = None,
    override_budget: Annotated[
        bool,
        typer.Option(
            "--override-budget",
            help="Deploy even if max_replicas would cost more than budget.max_monthly_usd.",
        ),
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Create the run's endpoint as planned; a second deploy of the same plan creates nothing.

    Refused for a run that did not succeed or failed a gate, and when the monthly cost at
    max_replicas exceeds budget.max_monthly_usd (unless --override-budget)."""
    from recipes.app import endpoints as use

    result = use.deploy(run_id, provider, recipe, overrides, override_budget=override_budget)
    for warning in result.warnings:
        err(f"warning: {warning}")
    ref = result.deployed.ref
    if output == Format.json:
        emit_json(
            {
                "endpoint": ref.endpoint,
                "provider": ref.provider,
                "deployment": ref.deployment,
                "existing": result.deployed.existing,
                "created": list(result.deployed.created),
            }
        )
        return
    print(ref.endpoint)
    if result.deployed.existing:
        err(f"{ref.endpoint} already serves {ref.deployment}; nothing created")
    for item in result.deployed.created:
        err(f"created {item}")
    err(f"follow it: recipe endpoint status {ref.endpoint}")


@app.command("status")
@handle_errors
def status(
    endpoint: EndpointArg, provider: ProviderOpt = None, output: FormatOpt = Format.text
) -> None:
    """The endpoint's state, URL, deployment, replicas and traffic split."""
    from recipes.app import endpoints as use

    current = use.status(endpoint, provider)
    if output == Format.json:
        emit_json(current.to_dict())
        return
    print(f"{current.endpoint}  {current.provider}  {current.state.value}")
    for key in ("deployment", "url", "replicas", "traffic", "message"):
        value = getattr(current, key)
        if value not in (None, "", {}):
            print(f"  {key:<10} {value}")


@app.command("invoke")
@handle_errors
def invoke(
    endpoint: EndpointArg,
    message: Annotated[str, typer.Argument(help="The user message to send.")],
    provider: ProviderOpt = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Most tokens to generate.")] = 64,
    model: Annotated[
        str | None,
        typer.Option(help="Model to ask (default: the fine-tune's name).", show_default=False),
    ] = None,
    output: FormatOpt = Format.text,
) -> None:
    """Send one OpenAI chat request to the endpoint (any backend) and print the answer."""
    from recipes.app import endpoints as use

    response = use.invoke(endpoint, message, provider, max_tokens, model)
    if output == Format.json:
        emit_json(response)
        return
    try:
        print(response["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        print(json.dumps(response, indent=2))


@app.command("delete")
@handle_errors
def delete(endpoint: EndpointArg, provider: ProviderOpt = None) -> None:
    """Delete the endpoint and what deploy created for it (configs, models, deployments)."""
    from recipes.app import endpoints as use

    entry = use.delete(endpoint, provider)
    err(f"deleted {entry.ref.endpoint} on {entry.ref.provider}")


@app.command("list")
@handle_errors
def list_(output: FormatOpt = Format.text) -> None:
    """Endpoints deployed from this machine (the ledger), newest first."""
    from recipes.app import endpoints as use

    entries = use.list_endpoints()
    if output == Format.json:
        emit_json(
            [
                {
                    "endpoint": e.ref.endpoint,
                    "provider": e.ref.provider,
                    "deployment": e.ref.deployment,
                    "run_id": e.run_id,
                }
                for e in entries
            ]
        )
        return
    if not entries:
        err("no endpoints deployed from here yet")
    for e in entries:
        print(f"{e.ref.endpoint:<32} {e.ref.provider:<6} {e.ref.deployment:<42} {e.run_id}")
