"""Secrets by reference: the orchestrator passes where a secret lives, never its value.

RECIPE_WANDB_SECRET names the secret and its store, and is read inside the job
with the job's own identity, then exported as WANDB_API_KEY for wandb to pick up:

- aws-secretsmanager:<name or ARN> (the SageMaker execution role)
- gcp-secretmanager:projects/P/secrets/S/versions/V (the Vertex AI job's service
  account, through Secret Manager's REST API)
- azure-keyvault:https://VAULT.vault.azure.net/secrets/NAME (the Azure ML compute's
  managed identity, through Key Vault's REST API)

Nothing here prints or stores the value.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

REFERENCE_ENV = "RECIPE_WANDB_SECRET"
SECRET_MANAGER = "https://secretmanager.googleapis.com"
# What reading each store needs inside the job (training images rarely have them):
# launch.py installs them with the requirements.
STORE_PACKAGES: dict[str, tuple[str, ...]] = {
    "aws-secretsmanager": ("boto3",),
    "gcp-secretmanager": ("google-auth", "requests"),
    "azure-keyvault": ("azure-identity",),
}


def _reference(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(store, name) of the secret to fetch, or None when there is nothing to fetch."""
    reference = env.get(REFERENCE_ENV)
    if not reference or env.get("WANDB_API_KEY"):  # an explicit key wins
        return None
    scheme, _, name = reference.partition(":")
    return scheme, name


def required_packages(env: Mapping[str, str]) -> list[str]:
    """The pip packages `resolve` needs for the configured store (none when nothing to fetch;
    an unknown store is reported by `resolve`)."""
    found = _reference(env)
    return list(STORE_PACKAGES.get(found[0], ())) if found else []


def resolve(env: Mapping[str, str]) -> dict[str, str]:
    """Extra environment for the training processes (empty when there is nothing to fetch)."""
    found = _reference(env)
    if found is None:
        return {}
    scheme, name = found
    if scheme == "aws-secretsmanager":
        import boto3

        value = boto3.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
        return {"WANDB_API_KEY": value.strip()}
    if scheme == "gcp-secretmanager":
        return {"WANDB_API_KEY": gcp_secret(name)}
    if scheme == "azure-keyvault":
        return {"WANDB_API_KEY": azure_secret(name)}
    raise SystemExit(f"error: {REFERENCE_ENV}: unknown secret store '{scheme}'")


def gcp_secret(name: str, session: Any = None, endpoint: str = SECRET_MANAGER) -> str:
    """One Secret Manager version's payload, with Application Default Credentials."""
    if session is None:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        credentials, project = google.auth.default(scopes=scopes)
        session = AuthorizedSession(credentials)
        if not name.startswith("projects/"):  # a bare secret name: the job's project
            name = f"projects/{project}/secrets/{name}/versions/latest"
    response = session.get(f"{endpoint.rstrip('/')}/v1/{name}:access", timeout=30)
    if response.status_code != 200:
        # The answer names the secret and the reason, never a value.
        try:
            reason = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            reason = response.reason
        raise SystemExit(
            f"error: {REFERENCE_ENV}: Secret Manager answered {response.status_code} for "
            f"{name}: {reason}"
        )
    return base64.b64decode(response.json()["payload"]["data"]).decode().strip()


def azure_secret(uri: str, token: str | None = None) -> str:
    """A Key Vault secret's value, with the job's identity (DefaultAzureCredential)."""
    import json
    import urllib.error
    import urllib.request

    if token is None:
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential().get_token("https://vault.azure.net/.default").token
    request = urllib.request.Request(
        f"{uri.rstrip('/')}?api-version=7.4", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["value"].strip()
    except urllib.error.HTTPError as exc:
        # The answer names the secret and the status, never a value.
        raise SystemExit(
            f"error: {REFERENCE_ENV}: Key Vault answered {exc.code} for {uri}"
        ) from None
