"""`recipe infra --provider gcp`: infra/gcp/*.tf parsed with python-hcl2 and checked as data
(labels, the bucket's protections, the budget's filter), the plan filled from a catalog recipe
(its .tfvars parsed back), apply with and without Terraform, and check through the real
google-cloud-storage, google-cloud-bigquery and an authorized session against an HTTP fake of
a good project and of projects with planted gaps."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from providers.base import Finding, InfraParams
from providers.gcp.infra import GcpInfra, names, render_tfvars
from recipes.app import infra
from recipes.errors import ProviderError, RecipeInputError
from tests.conftest import CATALOG, REPO
from tests.fakes import gcp_infra as g
from tests.fakes.gcp import fast_retries
from tests.fakes.gcp_infra import FakeGcpAccount, gcp_infra

A100 = CATALOG / "support-triage-a100.yaml"
FOLDER = REPO / "infra" / "gcp"
SETS = [f"billing_account={g.BILLING_ACCOUNT}"]
# Resource types whose google provider schema has a labels argument (user_labels for
# notification channels): each must carry local.labels. The others take none: key rings,
# service accounts, IAM members, project services and budgets have no labels in their APIs.
LABELED = {
    "google_kms_crypto_key": "labels",
    "google_storage_bucket": "labels",
    "google_bigquery_dataset": "labels",
    "google_monitoring_notification_channel": "user_labels",
}
UNLABELED = {
    "google_project_service",
    "google_kms_key_ring",
    "google_kms_crypto_key_iam_member",
    "google_service_account",
    "google_project_iam_member",
    "google_storage_bucket_iam_member",
    "google_billing_budget",
}


def parsed(name: str) -> dict[str, Any]:
    options = SerializationOptions(
        strip_string_quotes=True, with_comments=False, explicit_blocks=False
    )
    with open(FOLDER / name) as f:
        return hcl2.load(f, serialization_options=options)


def resources() -> dict[str, dict[str, Any]]:
    """{"type.name": its arguments} for every resource of main.tf."""
    out = {}
    for block in parsed("main.tf")["resource"]:
        for kind, named in block.items():
            for name, body in named.items():
                out[f"{kind}.{name}"] = body
    return out


def one(kind: str) -> dict[str, Any]:
    found = [body for key, body in resources().items() if key.startswith(kind + ".")]
    assert len(found) == 1, kind
    return found[0]


def params(*sets: str) -> InfraParams:
    return infra.params("gcp", A100, [*SETS, *sets])


# --- the template as data ----------------------------------------------------------------------


def test_every_file_parses_and_every_labelable_resource_carries_the_labels() -> None:
    for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
        assert parsed(name), name
    found = resources()
    assert {key.split(".")[0] for key in found} == set(LABELED) | UNLABELED
    for key, body in found.items():
        kind = key.split(".")[0]
        if kind in LABELED:
            assert body[LABELED[kind]] == "${local.labels}", key
    locals_ = parsed("main.tf")["locals"][0]
    assert locals_["labels"] == "${merge(var.labels, {cost_center = var.cost_center})}"


def test_plain_google_resources_only_and_infrastructure_manager_can_run_it() -> None:
    versions = parsed("versions.tf")["terraform"][0]
    assert list(versions["required_providers"][0]) == ["google"]
    assert "backend" not in versions  # Infrastructure Manager keeps the state itself
    for name in ("main.tf", "variables.tf", "outputs.tf"):
        assert "module" not in parsed(name), name


def test_the_bucket_is_private_versioned_and_encrypted_with_the_recipe_key() -> None:
    bucket = one("google_storage_bucket")
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["versioning"][0]["enabled"] is True
    assert bucket["encryption"][0]["default_kms_key_name"] == "${google_kms_crypto_key.storage.id}"
    assert bucket["force_destroy"] is False
    # the Cloud Storage service agent holds the key before the bucket names it
    grant = one("google_kms_crypto_key_iam_member")
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert "google_storage_project_service_account.gcs" in grant["member"]
    assert "${google_kms_crypto_key_iam_member.gcs_uses_key}" in bucket["depends_on"]
    prefixes = [r["condition"][0].get("matches_prefix") for r in bucket["lifecycle_rule"]]
    assert ["checkpoints/"] in prefixes
    key = one("google_kms_crypto_key")
    assert int(key["rotation_period"].rstrip("s")) <= 90 * 86400
    assert key["lifecycle"][0]["prevent_destroy"] is True
    assert one("google_kms_key_ring")["name"] == "${local.key_ring_name}"  # stable, reused


def test_the_service_account_gets_what_jobs_and_releases_use_and_the_bucket_alone() -> None:
    roles = parsed("main.tf")["locals"][0]["project_roles"]
    assert set(roles) == {
        "roles/aiplatform.user",
        "roles/artifactregistry.reader",
        "roles/logging.logWriter",
        "roles/monitoring.viewer",
    }
    assert not any("storage" in r or "admin" in r.lower() for r in roles)
    bucket_role = one("google_storage_bucket_iam_member")
    assert bucket_role["role"] == "roles/storage.objectAdmin"
    assert bucket_role["bucket"] == "${google_storage_bucket.recipe.name}"


def test_the_budget_filters_on_the_cost_center_with_80_actual_and_100_forecast() -> None:
    budget = one("google_billing_budget")
    assert budget["billing_account"] == "${var.billing_account}"
    flt = budget["budget_filter"][0]
    assert flt["labels"] == {"cost_center": "${var.cost_center}"}
    assert flt["calendar_period"] == "MONTH"  # FORECASTED_SPEND needs a calendar period
    rules = {(r["threshold_percent"], r.get("spend_basis")) for r in budget["threshold_rules"]}
    assert rules == {(0.8, "CURRENT_SPEND"), (1.0, "FORECASTED_SPEND")}
    amount = budget["amount"][0]["specified_amount"][0]
    assert amount["currency_code"] == "${var.currency}"


def test_the_billing_dataset_is_an_output_and_its_export_is_left_to_the_console() -> None:
    dataset = one("google_bigquery_dataset")
    assert dataset["delete_contents_on_destroy"] is False
    assert "billing_export_dataset" in {k for o in parsed("outputs.tf")["output"] for k in o}
    text = (FOLDER / "main.tf").read_text()
    assert "Terraform cannot turn on Cloud Billing export" in text
    assert "can NEVER be deleted" in text


# --- plan --------------------------------------------------------------------------------------


def test_plan_fills_the_variables_from_the_catalog_recipe_without_network() -> None:
    plan = GcpInfra().plan(params())  # no clients, no credentials: nothing is called
    declared = {k for v in parsed("variables.tf")["variable"] for k in v}
    assert set(plan.parameters) == declared
    p = plan.parameters
    assert p["project"] == "recipe-ml-dev" and p["region"] == "us-central1"
    assert p["cost_center"] == "cc-4711" and p["monthly_budget"] == 2500
    assert p["labels"] == {
        "project": "support-triage",
        "cost_center": "cc-4711",
        "owner": "ml-platform",
        "env": "dev",
    }
    assert p["billing_account"] == g.BILLING_ACCOUNT and p["alert_emails"] == []
    assert plan.engine == "terraform" and plan.template_path == "infra/gcp"
    assert "google_billing_budget" in plan.template


def test_the_tfvars_parse_back_to_the_parameters_and_the_steps_are_exact() -> None:
    plan = GcpInfra().plan(params("alert_email=finops@example.com"))
    write, init, tf_plan, apply, alternative = plan.steps
    assert (
        write.api == "file:write" and write.body["path"] == "infra/gcp/recipe-support-triage.tfvars"
    )
    assert hcl2.loads(write.body["content"], serialization_options=SerializationOptions(
        strip_string_quotes=True, with_comments=False, explicit_blocks=False)) == plan.parameters  # fmt: skip
    assert [s.body["command"] for s in (init, tf_plan, apply)] == [
        "terraform -chdir=infra/gcp init -input=false -no-color",
        "terraform -chdir=infra/gcp plan -input=false -no-color -var-file=recipe-support-triage.tfvars "
        "-out=recipe-account-support-triage.tfplan",
        "terraform -chdir=infra/gcp apply -input=false -no-color recipe-account-support-triage.tfplan",
    ]
    assert alternative.api == "shell:alternative"
    assert alternative.body["command"] == (
        "gcloud infra-manager deployments apply "
        "projects/recipe-ml-dev/locations/us-central1/deployments/recipe-account-support-triage"
        " --service-account=projects/recipe-ml-dev/serviceAccounts/$INFRA_MANAGER_SA"
        " --local-source=infra/gcp --inputs-file=infra/gcp/recipe-support-triage.tfvars"
        " --labels=project=support-triage,cost_center=cc-4711,owner=ml-platform,env=dev"
    )
    assert any("cannot turn on the Cloud Billing export" in n for n in plan.notes)


def test_tags_are_mapped_to_label_rules_and_hcl_special_text_stays_text() -> None:
    p = InfraParams(
        prefix="ml-team", region="europe-west4", tags={"Team": "ML Platform", "cost_center": "CC-9"},
        cost_center="CC-9", monthly_budget=99.5,
        settings={"project": "ml-team-prod", "billing_account": "billingAccounts/01a2b3-c4d5e6-f7a8b9"},
    )  # fmt: skip
    plan = GcpInfra().plan(p)
    assert plan.parameters["labels"] == {"team": "ml_platform", "cost_center": "cc-9"}
    assert plan.parameters["cost_center"] == "cc-9"  # the label value the budget can match
    assert plan.parameters["billing_account"] == "01A2B3-C4D5E6-F7A8B9"
    assert plan.parameters["monthly_budget"] == 99.5
    text = render_tfvars({"x": '${file("/etc/passwd")} %{if}', "n": 1})
    assert hcl2.loads(text)["x"] == '"$${file(\\"/etc/passwd\\")} %%{if}"'


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["billing_account=not-an-account"], "--set billing_account"),
        (["project=X"], "--set project"),
        ([f"alert_email={','.join(f'a{i}@example.com' for i in range(6))}"], "--set alert_email"),
        (["alert_email=nobody"], "--set alert_email"),
    ],
)
def test_bad_settings_are_named(sets: list[str], field: str) -> None:
    with pytest.raises(RecipeInputError) as err:
        GcpInfra().plan(params(*sets))
    assert field in {p.field for p in err.value.problems}


def test_a_missing_billing_account_is_planned_as_unset_and_refused_by_apply() -> None:
    """The plan shows what would be sent without network or a billing account (the
    acceptance runs it with the recipe alone); apply refuses it, saying how to give it."""
    plan = GcpInfra().plan(infra.params("gcp", A100, []))
    assert plan.parameters["billing_account"] == "SET-BILLING-ACCOUNT"
    assert any("billing_account is not set" in n for n in plan.notes)
    with pytest.raises(RecipeInputError) as err:
        GcpInfra().apply(plan)
    (problem,) = err.value.problems
    assert problem.field == "--set billing_account" and "--set billing_account=" in problem.hint


# --- apply -------------------------------------------------------------------------------------


def copy_template(root: Path) -> None:
    (root / "infra" / "gcp").mkdir(parents=True)
    for f in FOLDER.glob("*.tf"):
        (root / "infra" / "gcp" / f.name).write_text(f.read_text())


def test_apply_without_terraform_writes_the_tfvars_and_says_nothing_was_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_template(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    backend = GcpInfra(root=tmp_path)
    plan = backend.plan(params())
    lines = backend.apply(plan)
    assert lines[0].startswith("NOT APPLIED: Terraform is not installed")
    written = tmp_path / "infra" / "gcp" / "recipe-support-triage.tfvars"
    assert written.read_text() == plan.steps[0].body["content"]
    for step in plan.steps[1:]:
        assert any(step.body["command"] in line for line in lines)


def fake_terraform(tmp_path: Path, exit_code: int = 0, stderr: str = "") -> Path:
    script = tmp_path / "terraform"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$PWD $TF_IN_AUTOMATION $*" >> "{tmp_path}/calls.log"\n'
        f"printf '{stderr}' >&2\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_apply_runs_the_plans_terraform_commands_in_order(tmp_path: Path) -> None:
    copy_template(tmp_path)
    backend = GcpInfra(root=tmp_path, terraform=str(fake_terraform(tmp_path)))
    plan = backend.plan(params())
    lines = backend.apply(plan)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == [
        f"{tmp_path} 1 -chdir=infra/gcp init -input=false -no-color",
        f"{tmp_path} 1 -chdir=infra/gcp plan -input=false -no-color -var-file=recipe-support-triage.tfvars "
        "-out=recipe-account-support-triage.tfplan",
        f"{tmp_path} 1 -chdir=infra/gcp apply -input=false -no-color recipe-account-support-triage.tfplan",
    ]  # the Infrastructure Manager alternative is never run
    assert lines[0] == "wrote infra/gcp/recipe-support-triage.tfvars"
    assert lines[1:] == [f"ran: {s.body['command']}" for s in plan.steps[1:4]]


def test_a_failed_terraform_command_stops_with_terraforms_reason(tmp_path: Path) -> None:
    copy_template(tmp_path)
    error = "Initializing...\\nError: Error creating KeyRing: googleapi: Error 409: already exists"
    backend = GcpInfra(root=tmp_path, terraform=str(fake_terraform(tmp_path, 1, error)))
    with pytest.raises(ProviderError, match=r"init -input=false -no-color` failed \(exit 1\): Error: "
                       r"Error creating KeyRing.*409: already exists"):  # fmt: skip
        backend.apply(backend.plan(params()))
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1  # stopped there


# --- check -------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Any:
    with FakeGcpAccount() as account:
        yield account


def statuses(findings: list[Finding]) -> dict[str, str]:
    return {f.item: f.status for f in findings}


def test_a_good_project_is_all_ok(fake: FakeGcpAccount) -> None:
    fake.budget_page = 1  # two pages of budgets: the cost center's is on the second
    findings = gcp_infra(fake).check(params())
    assert statuses(findings) == {
        "bucket": "ok",
        "bucket encryption": "ok",
        "bucket public access": "ok",
        "bucket versioning": "ok",
        "kms key": "ok",
        "service account": "ok",
        "service account roles": "ok",
        "service account bucket role": "ok",
        "budget": "ok",
        "billing export dataset": "ok",
        "billing export": "ok",
    }, [f for f in findings if f.status != "ok"]
    by_item = {f.item: f for f in findings}
    assert "2500 USD a month on cost_center=cc-4711" in by_item["budget"].detail
    assert "gcp_billing_export_resource_v1_" in by_item["billing export"].detail
    budget_calls = fake.seen("GET", r"/budgets$")
    assert len(budget_calls) == 2 and budget_calls[1].query["pageToken"] == ["1"]
    assert budget_calls[0].headers["x-goog-user-project"] == g.PROJECT


def bucket(**iam: Any) -> dict[str, Any]:
    b = g.good_project()["bucket"]
    b["iamConfiguration"] = {**b["iamConfiguration"], **iam}
    return b


def no_cmek() -> dict[str, Any]:
    b = g.good_project()["bucket"]
    del b["encryption"]
    return b


def budget(**changes: Any) -> list[dict[str, Any]]:
    b = g.good_project()["budgets"][1]
    return [{**b, **changes}]


@pytest.mark.parametrize(
    ("changes", "item", "status", "said"),
    [
        ({"bucket": no_cmek()}, "bucket encryption", "weak", "Google-managed keys"),
        ({"bucket": bucket(publicAccessPrevention="inherited")}, "bucket public access", "weak",
         "prevention inherited"),
        ({"bucket": bucket(uniformBucketLevelAccess={"enabled": False})}, "bucket public access",
         "weak", "uniform bucket-level access off"),
        ({"bucket": None}, "bucket", "missing", "no bucket gs://support-triage-recipe-ml-dev"),
        ({"key": None}, "kms key", "missing", "no key support-triage-storage"),
        ({"key": {**g.good_project()["key"], "rotationPeriod": None}}, "kms key", "weak",
         "rotation off"),
        ({"service_account": None}, "service account", "missing", g.SERVICE_ACCOUNT),
        ({"project_bindings": g.good_project()["project_bindings"][:2]}, "service account roles",
         "weak", "lacks roles/logging.logWriter, roles/monitoring.viewer"),
        ({"bucket_bindings": []}, "service account bucket role", "missing", "no storage.objectAdmin"),
        ({"budgets": g.good_project()["budgets"][:1]}, "budget", "missing",
         "filters on cost_center=cc-4711"),
        ({"budgets": budget(budgetFilter={"labels": {"cost_center": ["cc-9999"]}})}, "budget",
         "missing", "cost_center=cc-4711"),
        ({"budgets": budget(notificationsRule={"disableDefaultIamRecipients": True})}, "budget",
         "weak", "nobody is notified"),
        ({"budgets": budget(thresholdRules=[])}, "budget", "weak", "no threshold rules"),
        ({"tables": []}, "billing export", "missing", "no gcp_billing_export_* table"),
        ({"tables": ["gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"]}, "billing export", "weak",
         "standard export only"),
        ({"dataset": None}, "billing export dataset", "missing",
         "no dataset recipe-ml-dev.support_triage_billing_export"),
    ],
)  # fmt: skip
def test_planted_gaps_are_weak_or_missing_with_a_fix(
    fake: FakeGcpAccount, changes: dict[str, Any], item: str, status: str, said: str
) -> None:
    fake.edit(**changes)
    findings = {f.item: f for f in gcp_infra(fake).check(params())}
    assert findings[item].status == status, findings[item]
    assert said in findings[item].detail and findings[item].fix
    others = {k: f.status for k, f in findings.items() if k != item and f.status != "ok"}
    assert not others or changes.keys() & {"service_account", "dataset", "bucket"}, others


def test_a_refused_read_is_one_line_naming_the_call(
    fake: FakeGcpAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    other = InfraParams(**{**params().__dict__, "settings": {
        "project": g.PROJECT, "billing_account": "0A0A0A-0B0B0B-0C0C0C"}})  # fmt: skip
    with pytest.raises(ProviderError) as err:
        gcp_infra(fake).check(other)
    assert "listing budgets of billing account 0A0A0A-0B0B0B-0C0C0C failed: 403" in str(err.value)
    assert "\n" not in str(err.value)


def test_names_match_the_templates_locals() -> None:
    n = names(params())
    assert n.bucket == g.BUCKET and n.service_account == g.SERVICE_ACCOUNT
    assert n.key_name == g.KEY and n.dataset == g.DATASET
    built = parsed("main.tf")["locals"][0]
    assert built["bucket_name"] == "${var.prefix}-${var.project}-recipe"
    assert built["key_ring_name"] == "${var.prefix}-recipe"
    assert built["dataset_id"] == '${replace(var.prefix, "-", "_")}_billing_export'
    assert built["service_account"] == "${var.prefix}-jobs"
    assert one("google_kms_crypto_key")["name"] == "${var.prefix}-storage"
    assert os.path.exists(FOLDER / "README.md")
