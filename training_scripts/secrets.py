"""Secrets by reference: the orchestrator passes where a secret lives, never its value.

RECIPE_WANDB_SECRET=aws-secretsmanager:<name or ARN> is read inside the job with
the job's own role and exported as WANDB_API_KEY for wandb to pick up. Nothing
here prints or stores the value.
"""

from __future__ import annotations

from collections.abc import Mapping

REFERENCE_ENV = "RECIPE_WANDB_SECRET"


def resolve(env: Mapping[str, str]) -> dict[str, str]:
    """Extra environment for the training processes (empty when there is nothing to fetch)."""
    reference = env.get(REFERENCE_ENV)
    if not reference or env.get("WANDB_API_KEY"):
        return {}
    scheme, _, name = reference.partition(":")
    if scheme == "aws-secretsmanager":
        import boto3

        value = boto3.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
        return {"WANDB_API_KEY": value.strip()}
    raise SystemExit(f"error: {REFERENCE_ENV}: unknown secret store '{scheme}'")
