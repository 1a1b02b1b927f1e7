"""`recipe infra` on AWS: infra/aws/account.yaml linted, planned from a recipe, applied through
moto's CloudFormation, and checked against a good account and one with planted gaps.

moto 5.2's CloudFormation knows AWS::IAM::Role, AWS::IAM::ManagedPolicy, AWS::KMS::Key,
AWS::KMS::Alias and AWS::S3::Bucket (encryption and tags only), not AWS::S3::BucketPolicy,
AWS::Budgets::Budget or AWS::BCMDataExports::Export. So the stack is deployed with
CreateBillingResources=false (settings billing_resources=false), which leaves the budget and
the export out through the template's own Condition; the budget is then made through moto's
Budgets API with the template's BudgetData, and the export answered by a botocore-level fake
(moto has no bcm-data-exports), as are Cost Explorer's tag activation calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from providers.aws import infra as aws_infra
from providers.aws.infra import AwsInfra, names, tag_keys
from providers.base import Finding, InfraParams
from recipes.app.infra import params as recipe_params
from recipes.errors import RecipeInputError
from tests.fakes.aws import (
    ACCOUNT,
    REGION,
    BotocoreFake,
    complete_moto_bucket,
    cost_allocation_tags,
    data_exports,
    moto_key_policies_as_text,
    tag_activation,
    use_fake_keys,
)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "aws" / "account.yaml"
RECIPE = ROOT / "recipes" / "catalog" / "support-triage-a100.yaml"
SERVICES = ("cloudformation", "s3", "iam", "kms", "sts", "budgets", "ce", "bcm-data-exports")


def test_template_passes_cfn_lint() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE)
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []


def test_plan_has_the_recipes_tags_and_budget() -> None:
    params = recipe_params("aws", RECIPE, [])
    plan = AwsInfra().plan(params)  # no clients: planning touches no network

    assert plan.engine == "cloudformation" and plan.template == TEMPLATE.read_text()
    assert plan.parameters["CostCenter"] == "cc-4711"
    assert plan.parameters["MonthlyBudget"] == "2500"
    assert plan.parameters["CreateBillingResources"] == "true"  # us-east-1 has both types
    apis = [s.api for s in plan.steps]
    assert apis == [
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "ce:UpdateCostAllocationTagsStatus",
    ]
    create = plan.steps[0].body
    assert (
        create["ChangeSetType"] == "CREATE"
        and create["StackName"] == "support-triage-recipe-account"
    )
    assert {t["Key"]: t["Value"] for t in create["Tags"]} == {
        "project": "support-triage",
        "cost_center": "cc-4711",
        "owner": "ml-platform",
        "env": "dev",
    }
    assert {"ParameterKey": "MonthlyBudget", "ParameterValue": "2500"} in create["Parameters"]
    assert plan.steps[1].body == {
        "StackName": create["StackName"],
        "ChangeSetName": create["ChangeSetName"],
    }
    activated = [t["TagKey"] for t in plan.steps[2].body["CostAllocationTagsStatus"]]
    assert activated == [
        "project", "cost_center", "owner", "env", "recipe", "run_id", "endpoint", "recipe_hash"
    ]  # fmt: skip
    assert any("no alert_email" in n for n in plan.notes)
    assert plan.to_dict()["steps"][0]["body"]["TemplateBody"] == plan.template


def test_plan_outside_billing_regions_leaves_budget_out_and_says_so() -> None:
    params = _params(region="eu-central-1", billing=None)
    plan = AwsInfra().plan(params)
    assert plan.parameters["CreateBillingResources"] == "false"
    assert any("eu-central-1" in n and "FOCUS export" in n for n in plan.notes)


def test_plan_refuses_a_budget_not_in_usd() -> None:
    params = _params(currency="EUR")
    with pytest.raises(RecipeInputError, match="USD"):
        AwsInfra().plan(params)


def test_plan_splits_tag_activation_in_twenties() -> None:
    tags = {f"k{i}": "v" for i in range(30)}
    plan = AwsInfra().plan(_params(tags={**tags, "cost_center": "cc-4711"}))
    bodies = [s.body for s in plan.steps if s.api == "ce:UpdateCostAllocationTagsStatus"]
    assert [len(b["CostAllocationTagsStatus"]) for b in bodies] == [20, 15]


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto, with clients for every service the backend calls and the botocore-level fakes."""
    use_fake_keys(monkeypatch)
    monkeypatch.setattr(aws_infra, "POLL_S", 0.0)
    with mock_aws():
        clients = {f"{s}:{REGION}": boto3.client(s, region_name=REGION) for s in SERVICES}
        fakes = {
            "ce": BotocoreFake(clients[f"ce:{REGION}"]),
            "exports": BotocoreFake(clients[f"bcm-data-exports:{REGION}"]),
        }
        yield clients, fakes


def _deploy(
    clients: dict[str, Any], fakes: dict[str, BotocoreFake]
) -> tuple[InfraParams, list[str]]:
    """The recipe's stack through apply, then what moto's CloudFormation cannot make."""
    params = _params()
    tag_activation(fakes["ce"], refused={"run_id": "TagKeysNotFoundException"})
    lines = AwsInfra(**clients).apply(AwsInfra().plan(params))
    named = names(params, ACCOUNT)
    complete_moto_bucket(clients[f"s3:{REGION}"], TEMPLATE.read_text(), named["bucket"])
    moto_key_policies_as_text()
    return params, lines


def _good_billing(
    clients: dict[str, Any], fakes: dict[str, BotocoreFake], params: InfraParams
) -> None:
    named = names(params, ACCOUNT)
    clients[f"budgets:{REGION}"].create_budget(
        AccountId=ACCOUNT,
        Budget={
            "BudgetName": named["budget"],
            "BudgetType": "COST",
            "TimeUnit": "MONTHLY",
            "BudgetLimit": {"Amount": "2500", "Unit": "USD"},
            "CostFilters": {"TagKeyValue": ["user:cost_center$cc-4711"]},
        },
    )
    data_exports(
        fakes["exports"],
        [
            {
                "ExportArn": f"arn:aws:bcm-data-exports:us-east-1:{ACCOUNT}:export/{named['export']}-1",
                "Name": named["export"],
                "DataQuery": {"QueryStatement": "SELECT BilledCost, Tags FROM FOCUS_1_0_AWS"},
                "DestinationConfigurations": {
                    "S3Destination": {
                        "S3Bucket": named["bucket"],
                        "S3Prefix": "focus",
                        "S3Region": REGION,
                        "S3OutputConfigurations": {
                            "OutputType": "CUSTOM",
                            "Format": "PARQUET",
                            "Compression": "PARQUET",
                            "Overwrite": "OVERWRITE_REPORT",
                        },
                    }
                },
                "RefreshCadence": {"Frequency": "SYNCHRONOUS"},
            }
        ],
    )
    cost_allocation_tags(fakes["ce"], {k: "Active" for k in tag_keys(params)})


def test_apply_deploys_the_stack_and_activates_tags(account: Any) -> None:
    clients, fakes = account
    params, lines = _deploy(clients, fakes)
    named = names(params, ACCOUNT)

    stack = clients[f"cloudformation:{REGION}"].describe_stacks(StackName=named["stack"])
    assert stack["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    # (moto fills no Outputs on a stack made from a change set; AWS lists them on this line)
    assert f"stack {named['stack']} CREATE_COMPLETE" in lines
    assert "cost allocation tag cost_center activated" in lines
    assert any(line.startswith("cost allocation tag run_id not activated") for line in lines)
    # The exact bodies the plan showed went out.
    sent = fakes["ce"].bodies("UpdateCostAllocationTagsStatus")
    assert sent == [AwsInfra().plan(params).steps[2].body]
    encryption = clients[f"s3:{REGION}"].get_bucket_encryption(Bucket=named["bucket"])
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_check_on_a_good_account_is_all_ok(account: Any) -> None:
    clients, fakes = account
    params, _ = _deploy(clients, fakes)
    _good_billing(clients, fakes, params)

    findings = AwsInfra(**clients).check(params)

    assert [f for f in findings if f.status != "ok"] == []
    items = {f.item for f in findings}
    assert {
        "bucket",
        "bucket encryption",
        "bucket public access",
        "bucket versioning",
        "kms key rotation",
        "execution role",
        "budget",
        "billing export",
        "cost allocation tag cost_center",
        "cost allocation tag recipe_hash",
    } <= items


def test_check_reports_planted_gaps(account: Any) -> None:
    """The acceptance: a missing budget, an unencrypted bucket, an inactive cost allocation
    tag (and a missing export) are each reported."""
    clients, fakes = account
    params, _ = _deploy(clients, fakes)
    named = names(params, ACCOUNT)
    clients[f"s3:{REGION}"].delete_bucket_encryption(Bucket=named["bucket"])
    data_exports(fakes["exports"], [])
    statuses = {k: "Active" for k in tag_keys(params)}
    statuses["cost_center"] = "Inactive"
    del statuses["endpoint"]  # never seen on a resource
    cost_allocation_tags(fakes["ce"], statuses)

    findings = {f.item: f for f in AwsInfra(**clients).check(params)}

    assert _is(findings["bucket encryption"], "missing", named["bucket"])
    assert _is(findings["budget"], "missing", "cc-4711")
    assert _is(findings["cost allocation tag cost_center"], "missing", "Inactive")
    assert _is(findings["cost allocation tag endpoint"], "missing", "not seen")
    assert _is(findings["billing export"], "missing", named["export"])
    assert findings["bucket public access"].status == "ok"
    assert findings["execution role"].status == "ok"


def test_check_reports_weak_settings(account: Any) -> None:
    clients, fakes = account
    params, _ = _deploy(clients, fakes)
    _good_billing(clients, fakes, params)
    named = names(params, ACCOUNT)
    s3, iam = clients[f"s3:{REGION}"], clients[f"iam:{REGION}"]
    s3.put_bucket_encryption(
        Bucket=named["bucket"],
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_public_access_block(
        Bucket=named["bucket"],
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    for policy in iam.list_attached_role_policies(RoleName=named["role"])["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=named["role"], PolicyArn=policy["PolicyArn"])
    key = clients[f"kms:{REGION}"].describe_key(KeyId=named["alias"])["KeyMetadata"]["KeyId"]
    clients[f"kms:{REGION}"].disable_key_rotation(KeyId=key)

    findings = {f.item: f for f in AwsInfra(**clients).check(params)}

    assert _is(findings["bucket encryption"], "weak", "AES256")
    assert _is(findings["bucket public access"], "weak", "BlockPublicPolicy")
    assert _is(findings["execution role"], "weak", "sagemaker:InvokeEndpoint")
    assert _is(findings["kms key rotation"], "weak", "rotation off")


def test_check_on_an_empty_account_reports_the_bucket_missing(account: Any) -> None:
    clients, fakes = account
    params = _params()
    data_exports(fakes["exports"], [])
    cost_allocation_tags(fakes["ce"], {})
    findings = {f.item: f for f in AwsInfra(**clients).check(params)}
    for item in ("bucket", "kms key", "execution role", "budget", "billing export"):
        assert findings[item].status == "missing", item
        assert findings[item].fix


# --- helpers ----------------------------------------------------------------------------------


def _params(
    region: str = REGION,
    billing: str | None = "false",
    currency: str = "USD",
    tags: dict[str, str] | None = None,
) -> InfraParams:
    return InfraParams(
        prefix="support-triage",
        region=region,
        tags=tags or {"project": "support-triage", "cost_center": "cc-4711", "env": "dev"},
        cost_center="cc-4711",
        monthly_budget=2500.0,
        currency=currency,
        settings={"billing_resources": billing} if billing else {},
    )


def _is(finding: Finding, status: str, word: str) -> bool:
    """The finding has this status and names `word` in its detail, and says how to fix it."""
    assert (finding.status, word in finding.detail) == (status, True), finding
    return bool(finding.fix)
