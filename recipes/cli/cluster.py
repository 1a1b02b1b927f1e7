"""`recipe cluster`: HyperPod clusters for recipes with compute.aws.target: hyperpod."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from recipes.cli.common import (
    EXIT_BAD_INPUT,
    FileArg,
    Format,
    FormatOpt,
    emit_json,
    err,
    handle_errors,
)

app = typer.Typer(
    help="SageMaker HyperPod clusters for recipes with compute.aws.target: hyperpod.",
    no_args_is_help=True,
)


@app.command("plan")
@handle_errors
def plan(file: FileArg, output: FormatOpt = Format.text) -> None:
    """Show the CreateCluster request the recipe implies. No network."""
    from recipes.app import clusters

    request = clusters.plan(file)[1].request
    if output == Format.json:
        emit_json({"api": request.api, "body": request.body})
    else:
        print(f"{request.api}\n{json.dumps(request.body, indent=2)}")


@app.command("create")
@handle_errors
def create(file: FileArg, output: FormatOpt = Format.text) -> None:
    """Create the recipe's HyperPod cluster (instance group, lifecycle scripts, EKS)."""
    from recipes.app import clusters

    arn = clusters.create(file)
    if output == Format.json:
        emit_json({"cluster_arn": arn})
    else:
        print(arn)
        err(f"follow it: recipe cluster status {file}")


@app.command("status")
@handle_errors
def status(file: FileArg, output: FormatOpt = Format.text) -> None:
    """The cluster's state, instance groups and nodes."""
    from recipes.app import clusters

    info = clusters.status(file)
    if output == Format.json:
        emit_json(info.to_dict())
        return
    print(f"{info.name}  {info.status}" + (f"  {info.failure}" if info.failure else ""))
    for group in info.instance_groups:
        print(
            f"  group {group['name']}: {group['instance_type']} {group['current']}/{group['target']}"
        )
    for node in info.nodes:
        print(f"  node  {node['id']}  {node['type']}  {node['status']}")


@app.command("delete")
@handle_errors
def delete(
    file: FileArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the recipe's HyperPod cluster and its nodes."""
    from recipes.app import clusters

    _, cluster = clusters.plan(file)
    if not yes and not typer.confirm(
        f"delete HyperPod cluster {cluster.name} in {cluster.region}?"
    ):
        raise typer.Exit(EXIT_BAD_INPUT)
    clusters.delete(file)
    print(f"{cluster.name}: deleting")
