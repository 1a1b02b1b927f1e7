"""`recipe providers`: extras, credentials found locally, capabilities."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CLI


def test_lists_every_backend_with_credentials_and_capabilities(cli: CLI, tmp_path: Path) -> None:
    for key in [k for k in cli.env if k.startswith(("AWS_", "AZURE_", "GOOGLE_"))]:
        del cli.env[key]
    cli.env["HOME"] = str(tmp_path)  # no ~/.aws, ~/.azure or gcloud files
    cli.env["AWS_ACCESS_KEY_ID"] = "testing"
    cli.env["AWS_SECRET_ACCESS_KEY"] = "testing"
    result = cli("providers", "--format", "json")
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert {"local", "aws", "azure"} <= set(entries)
    assert entries["aws"]["credentials"] == "AWS_ACCESS_KEY_ID"
    assert entries["azure"]["credentials"] == "none found"
    assert entries["aws"]["installed"] is True
    assert entries["aws"]["capabilities"]["spot"] is True
    assert entries["local"]["capabilities"]["multi_node"] is False
    text = cli("providers")
    assert "aws    extra aws: installed; credentials: AWS_ACCESS_KEY_ID" in text.stdout
