"""Secret references are resolved inside the job, from each cloud's store."""

from __future__ import annotations

import re

import boto3
import pytest
from moto import mock_aws

from tests.fakes.http import FakeServer, Seen, json_reply
from training_scripts import secrets


@mock_aws
def test_aws_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    boto3.client("secretsmanager").create_secret(Name="recipe/wandb", SecretString="fake-value\n")
    env = {"RECIPE_WANDB_SECRET": "aws-secretsmanager:recipe/wandb"}
    assert secrets.resolve(env) == {"WANDB_API_KEY": "fake-value"}
    assert secrets.resolve({**env, "WANDB_API_KEY": "given"}) == {}  # an explicit key wins


def test_azure_key_vault() -> None:
    def secret(request: Seen, match: re.Match[str]) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("authorization") != "Bearer vault-token":
            return json_reply(401, {"error": {"code": "Unauthorized"}})
        assert request.query["api-version"] == ["7.4"]
        return json_reply(200, {"value": "fake-value", "id": request.path})

    with FakeServer() as server:
        server.route("GET", r"/secrets/(?P<name>[^/]+)", secret)
        uri = f"{server.url}/secrets/wandb-api-key"
        assert secrets.azure_secret(uri, token="vault-token") == "fake-value"
        with pytest.raises(SystemExit, match="Key Vault answered 401"):
            secrets.azure_secret(uri, token="wrong")


def test_unknown_store_is_named() -> None:
    with pytest.raises(SystemExit, match="unknown secret store 'vault'"):
        secrets.resolve({"RECIPE_WANDB_SECRET": "vault:x"})
