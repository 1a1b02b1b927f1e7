"""`recipe data check` and `recipe data preview`, through the CLI as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CATALOG, CLI, SUPPORT_DATA
from tests.fakes.aws import http_client, moto_server, server_env
from tests.fakes.azure import SUB as SUBSCRIPTION
from tests.fakes.azure import FakeCredential, azureml_datastore_reads
from tests.fakes.gcp import gcs_reads

GOOD = {
    "messages": [
        {"role": "user", "content": "My card was stolen yesterday."},
        {"role": "assistant", "content": "card_lost_stolen"},
    ]
}


def chat(*messages: dict, **extra) -> dict:
    return {"messages": list(messages), **extra}


U = {"role": "user", "content": "hello"}
A = {"role": "assistant", "content": "hi"}

# line number -> (row, words the report must say about that line)
DEFECTS: dict[int, tuple[object, str]] = {
    1: (GOOD, ""),
    2: ("{not json", "invalid JSON"),
    3: (b'{"messages": "caf\xe9"}', "not UTF-8"),
    4: ([1, 2], "expected a JSON object"),
    5: ({"text": "no messages"}, "messages: missing or empty"),
    6: ({"messages": []}, "messages: missing or empty"),
    7: (chat({"content": "who am I"}, A), "messages[0].role: missing"),
    8: (chat({"role": "user"}, A), "messages[0].content: missing"),
    9: (chat({**U, "mood": "happy"}, A), "messages[0]: unknown key 'mood'"),
    10: (chat({"role": "robot", "content": "beep"}, A), "messages[0].role: 'robot' is not one of"),
    11: (chat(U), "no assistant message"),
    12: (chat(U, {**A, "weight": 2}), "messages[1].weight: must be 0 or 1"),
    13: (chat(U, A, tools=[{"type": "func"}]), "tools[0].type: expected 'function'"),
    14: (
        chat(
            U,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": "lookup", "arguments": "{oops"}}
                ],
            },
        ),
        "tool_calls[0].function.arguments: not valid JSON",
    ),
    15: (chat({"role": "user", "content": "word " * 400}, A), "over max_seq_len 128"),
    16: (GOOD, "duplicate of line 1"),
    17: (
        chat({"role": "user", "content": "my CARD was stolen yesterday"}, GOOD["messages"][1]),
        "near-duplicate of line 1",
    ),
    18: (
        chat({"role": "user", "content": "Write to ana.lopez@example.org"}, A),
        "personal data: email",
    ),
    19: (
        chat({"role": "user", "content": "Card 4111 1111 1111 1111 was charged"}, A),
        "personal data: card",
    ),
    20: (
        chat({"role": "user", "content": "IBAN DE89 3704 0044 0532 0130 00"}, A),
        "personal data: iban",
    ),
    21: (
        chat({"role": "user", "content": "Call me on +44 20 7946 0958"}, A),
        "personal data: phone",
    ),
}


def write_defects(path: Path) -> None:
    lines = []
    for _, (row, _) in sorted(DEFECTS.items()):
        if isinstance(row, bytes):
            lines.append(row)
        elif isinstance(row, str):
            lines.append(row.encode())
        else:
            lines.append(json.dumps(row).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")


def small_recipe(tmp_path: Path) -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: check\nmodel: {base: builtin:tiny-chat}\n"
        f"data: {{train: {SUPPORT_DATA / 'train.jsonl'}, max_seq_len: 128}}\n"
    )
    return recipe


def test_every_defect_is_reported_on_its_line(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    write_defects(bad)
    result = cli("data", "check", bad, "--recipe", small_recipe(tmp_path), "--format", "json")
    assert result.returncode == 2, result.stderr
    (report,) = json.loads(result.stdout)
    said: dict[int, str] = {}
    for finding in report["errors"] + report["warnings"]:
        said[finding["line"]] = said.get(finding["line"], "") + " | " + finding["message"]
    for line, (_, words) in DEFECTS.items():
        if words:
            assert words in said.get(line, ""), f"line {line}: {said.get(line)!r}"
    assert 1 not in said  # the good row is not blamed


def test_text_report_names_file_and_line(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    write_defects(bad)
    result = cli("data", "check", bad)
    assert result.returncode == 2
    assert f"{bad}:2: error invalid JSON" in result.stdout
    assert f"{bad}:16: warning duplicate of line 1" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_empty_file(cli: CLI, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = cli("data", "check", empty)
    assert result.returncode == 2 and "empty" in result.stdout


def test_quickstart_data_passes_with_statistics(cli: CLI) -> None:
    result = cli(
        "data",
        "check",
        SUPPORT_DATA / "train.jsonl",
        "--recipe",
        CATALOG / "quickstart.yaml",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stdout
    (report,) = json.loads(result.stdout)
    assert report["examples"] == 2400 and not report["errors"] and not report["warnings"]
    stats = report["stats"]
    assert set(stats["tokens_per_example"]) == {"min", "p10", "median", "p90", "max"}
    assert stats["assistant_tokens_per_example"]["max"] < stats["tokens_per_example"]["min"]
    assert stats["training_tokens"] == stats["tokens"] * 2  # two epochs in the quickstart


def test_strict_makes_warnings_fail(cli: CLI, tmp_path: Path) -> None:
    dupes = tmp_path / "dupes.jsonl"
    dupes.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
    assert cli("data", "check", dupes).returncode == 0
    assert cli("data", "check", dupes, "--strict").returncode == 2


def test_pii_policy_from_the_recipe(cli: CLI, tmp_path: Path) -> None:
    rows = tmp_path / "pii.jsonl"
    rows.write_text(json.dumps(chat({"role": "user", "content": "mail a@b.example.com"}, A)) + "\n")
    recipe = small_recipe(tmp_path)
    assert cli("data", "check", rows, "--recipe", recipe).returncode == 2  # default: fail
    recipe.write_text(
        recipe.read_text().replace("max_seq_len: 128", "max_seq_len: 128, pii: redact")
    )
    result = cli("data", "check", rows, "--recipe", recipe)
    assert result.returncode == 0 and "will be redacted" in result.stdout


def test_other_formats(cli: CLI, tmp_path: Path) -> None:
    pc = tmp_path / "pc.jsonl"
    pc.write_text(
        json.dumps({"prompt": "2+2?", "completion": "4"})
        + "\n"
        + json.dumps({"prompt": "x"})
        + "\n"
    )
    recipe = small_recipe(tmp_path)
    recipe.write_text(
        recipe.read_text().replace(
            "max_seq_len: 128", "max_seq_len: 128, format: prompt_completion"
        )
    )
    result = cli("data", "check", pc, "--recipe", recipe)
    assert result.returncode == 2 and f"{pc}:2: error completion: missing" in result.stdout
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Sum", "input": "2 2", "output": "4"}) + "\n")
    recipe.write_text(recipe.read_text().replace("prompt_completion", "alpaca"))
    assert cli("data", "check", alpaca, "--recipe", recipe).returncode == 0


def test_preview_marks_only_the_answer(cli: CLI, tmp_path: Path) -> None:
    result = cli(
        "data",
        "preview",
        SUPPORT_DATA / "golden.jsonl",
        "--recipe",
        CATALOG / "quickstart.yaml",
        "-n",
        "1",
    )
    assert result.returncode == 0, result.stderr
    body = result.stdout.split("\n", 1)[1]  # after the header and its legend
    assert body.count("⟦") == 1
    assert body.split("⟦")[1].split("⟧")[0] == "insurance_claim<|im_end|>\n"


def test_s3_source_through_a_moto_server(cli: CLI, tmp_path: Path) -> None:
    """The real boto3 code path, against moto's S3 over HTTP on loopback."""
    with moto_server() as endpoint:
        s3 = http_client("s3", endpoint)
        s3.create_bucket(Bucket="tickets")
        bad = tmp_path / "bad.jsonl"
        write_defects(bad)
        s3.upload_file(str(bad), "tickets", "support/bad.jsonl")
        s3.upload_file(str(SUPPORT_DATA / "golden.jsonl"), "tickets", "support/golden.jsonl")
        cli.env.update(server_env(endpoint))

        result = cli("data", "check", "s3://tickets/support/bad.jsonl")
        assert result.returncode == 2
        assert "s3://tickets/support/bad.jsonl:2: error invalid JSON" in result.stdout
        good = cli("data", "check", "s3://tickets/support/golden.jsonl", "--format", "json")
        assert good.returncode == 0, good.stdout
        assert json.loads(good.stdout)[0]["examples"] == 240
        missing = cli("data", "check", "s3://tickets/nope.jsonl")
        assert missing.returncode == 2 and "no such object" in missing.stderr


def test_gs_source_through_the_storage_sdk(cli: CLI, tmp_path: Path) -> None:
    """google-cloud-storage itself, pointed at an HTTP fake by STORAGE_EMULATOR_HOST."""
    bad = tmp_path / "bad.jsonl"
    write_defects(bad)
    objects = {
        "tickets/support/bad.jsonl": bad.read_bytes(),
        "tickets/support/golden.jsonl": (SUPPORT_DATA / "golden.jsonl").read_bytes(),
    }
    with gcs_reads(objects) as server:
        cli.env["STORAGE_EMULATOR_HOST"] = server.url

        result = cli("data", "check", "gs://tickets/support/bad.jsonl")
        assert result.returncode == 2
        assert "gs://tickets/support/bad.jsonl:2: error invalid JSON" in result.stdout
        good = cli("data", "check", "gs://tickets/support/golden.jsonl", "--format", "json")
        assert good.returncode == 0, good.stdout + good.stderr
        assert json.loads(good.stdout)[0]["examples"] == 240
        missing = cli("data", "check", "gs://tickets/nope.jsonl")
        assert missing.returncode == 2
        assert missing.stderr.strip() == "gs://tickets/nope.jsonl: no such object"
    downloads = [s.path for s in server.seen if s.path.startswith("/download/")]
    assert "/download/storage/v1/b/tickets/o/support%2Fbad.jsonl" in downloads


def test_unknown_remote_scheme_is_named(cli: CLI) -> None:
    result = cli("data", "check", "ftp://host/train.jsonl")
    assert result.returncode == 2
    assert "ftp:// is not a data source" in result.stderr


def test_azureml_source_through_azure_ai_ml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real MLClient resolves the datastore over HTTP; azure-storage-blob reads the blob."""
    from azure.ai.ml import MLClient

    from providers.azure.storage import download
    from recipes.errors import RecipeInputError

    golden = (SUPPORT_DATA / "golden.jsonl").read_bytes()
    with azureml_datastore_reads({"support/golden.jsonl": golden}) as server:
        monkeypatch.setenv("AZUREML_DEV_URL_MFE", server.url)  # azure-ai-ml's ARM endpoint
        monkeypatch.setenv("RECIPE_AZURE_BLOB_ENDPOINT", f"{server.url}/stmlworkspace")
        monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)  # for the short form
        monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-ml")
        monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws-ml")
        client = MLClient(FakeCredential(), SUBSCRIPTION, "rg-ml", "ws-ml", enable_telemetry=False)
        long_uri = (
            f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/rg-ml/workspaces/ws-ml"
            "/datastores/workspaceblobstore/paths/support/golden.jsonl"
        )
        copy = download(long_uri, tmp_path, ml_client=client)
        assert copy.read_bytes() == golden

        with pytest.raises(RecipeInputError, match="no such object"):
            download(
                "azureml://datastores/workspaceblobstore/paths/support/nope.jsonl",
                tmp_path,
                ml_client=client,
            )
        with pytest.raises(RecipeInputError, match="datastore 'elsewhere'"):
            download("azureml://datastores/elsewhere/paths/x.jsonl", tmp_path, ml_client=client)
    calls = [(s.method, s.path.rsplit("/", 2)[-2:]) for s in server.seen]
    assert calls[:3] == [
        ("GET", ["datastores", "workspaceblobstore"]),
        ("POST", ["workspaceblobstore", "listSecrets"]),
        ("GET", ["support", "golden.jsonl"]),
    ]
    assert server.seen[0].headers["authorization"] == "Bearer fake-token"
    assert server.seen[2].query["sig"] == ["not-a-real-signature"]  # the datastore's SAS


def test_azureml_short_form_needs_a_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.azure.storage import parse
    from recipes.errors import RecipeInputError

    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RecipeInputError, match="AZURE_SUBSCRIPTION_ID"):
        parse("azureml://datastores/workspaceblobstore/paths/train.jsonl")
    with pytest.raises(RecipeInputError, match="not an Azure ML datastore URI"):
        parse("azureml://workspaceblobstore/train.jsonl")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws")
    where = parse("azureml://datastores/workspaceblobstore/paths/data/train.jsonl")
    assert (where.workspace, where.datastore, where.path) == (
        "ws",
        "workspaceblobstore",
        "data/train.jsonl",
    )
