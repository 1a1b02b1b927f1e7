"""An AWS account set up for recipes: infra/aws/account.yaml through CloudFormation.

- plan: the template filled from the recipe (no network): a CreateChangeSet and an
  ExecuteChangeSet with their exact bodies, then Cost Explorer's UpdateCostAllocationTagsStatus
  for the recipe's tag keys and the run's (recipe, run_id, endpoint, recipe_hash).
- apply: those steps through CloudFormation (it rolls a failed stack back itself); a change
  set that changes nothing is deleted and reported as such.
- check: reads the account: the bucket (KMS encryption, public access block, versioning), the
  key's rotation, the execution role and the actions recipes need, the budget on the cost
  center, the FOCUS export, and each tag key's cost allocation status.

Budgets, Data Exports and Cost Explorer are global services answered in us-east-1.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from providers.aws import sdk
from providers.base import Finding, InfraParams, InfraPlan, Request
from recipes.errors import ErrorKind, Problem, ProviderError, RecipeInputError
from recipes.tags import AWS, map_tags

TEMPLATE = "infra/aws/account.yaml"
ROOT = Path(__file__).resolve().parents[2]
GLOBAL_REGION = "us-east-1"  # budgets, bcm-data-exports, ce
# Tag keys every run and endpoint adds to the recipe's (README: "Cost reports for finance").
RUN_TAG_KEYS = ("recipe", "run_id", "endpoint", "recipe_hash")
# UpdateCostAllocationTagsStatus takes 1-20 keys (botocore's ce model, CostAllocationTagStatusList).
TAGS_PER_CALL = 20
# Regions whose CloudFormation has both AWS::Budgets::Budget and AWS::BCMDataExports::Export
# (the per-region resource lists cfn-lint 1.58 ships); elsewhere the stack leaves them out.
BILLING_REGIONS = frozenset({"us-east-1", "us-west-1", "us-west-2", "eu-west-2"})
# Stack and change set waits; module-level so tests can shorten them.
POLL_S = 5.0
TIMEOUT_S = 3600.0
# What recipes do with the execution role: training jobs (README "Run on SageMaker"),
# endpoints and releases ("Serve and deploy", "Release").
REQUIRED_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "sagemaker:CreateModel",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:CreateEndpoint",
    "sagemaker:UpdateEndpoint",
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "sagemaker:DescribeEndpoint",
    "sagemaker:DeleteEndpoint",
    "sagemaker:InvokeEndpoint",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "iam:CreateServiceLinkedRole",
    "iam:PassRole",
)


def names(params: InfraParams, account: str = "ACCOUNT") -> dict[str, str]:
    """What the template names its resources (keep in step with account.yaml)."""
    p = params.prefix
    return {
        "stack": f"{p}-recipe-account",
        "bucket": f"{p}-{account}-{params.region}",
        "role": f"{p}-sagemaker-execution",
        "alias": f"alias/{p}-recipe",
        "budget": f"{p}-{params.cost_center}-monthly",
        "export": f"{p}-focus",
    }


def tag_keys(params: InfraParams) -> list[str]:
    """Keys to activate for cost allocation: the recipe's, as AWS stores them, then the run's."""
    keys = list(map_tags(params.tags, AWS).tags)
    return keys + [k for k in RUN_TAG_KEYS if k not in keys]


class AwsInfra:
    name = "aws"

    def __init__(self, **clients: Any):
        # Injected by tests as "cloudformation:us-east-1", "s3:us-east-1"..., like the other
        # aws modules.
        self.clients = sdk.Clients(clients)

    # --- plan: no network ----------------------------------------------------------------------

    def plan(self, params: InfraParams) -> InfraPlan:
        _check_params(params)
        template = (ROOT / TEMPLATE).read_text()
        parameters, notes = _parameters(params)
        tags = [{"Key": k, "Value": v} for k, v in map_tags(params.tags, AWS).tags.items()]
        stack = names(params)["stack"]
        digest = hashlib.sha256(
            json.dumps([template, parameters, tags], sort_keys=True).encode()
        ).hexdigest()[:12]
        change_set = f"recipe-{digest}"
        create = {
            "StackName": stack,
            "ChangeSetName": change_set,
            "ChangeSetType": "CREATE",
            "TemplateBody": template,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Tags": tags,
            "Description": "recipe infra apply",
        }
        steps = [
            Request("cloudformation:CreateChangeSet", create),
            Request(
                "cloudformation:ExecuteChangeSet",
                {"StackName": stack, "ChangeSetName": change_set},
            ),
        ]
        keys = tag_keys(params)
        for i in range(0, len(keys), TAGS_PER_CALL):
            statuses = [{"TagKey": k, "Status": "Active"} for k in keys[i : i + TAGS_PER_CALL]]
            steps.append(
                Request("ce:UpdateCostAllocationTagsStatus", {"CostAllocationTagsStatus": statuses})
            )
        notes = [
            f"stack region: {params.region}",
            *notes,
            f"stack {stack}: ChangeSetType is CREATE while the stack does not exist; apply "
            "sends UPDATE (the body otherwise the same) when it does",
            "stack-level Tags are copied by CloudFormation to every resource that takes tags",
            "a tag key AWS has not yet seen on any resource cannot be activated; apply reports "
            "it, and `recipe infra check` shows it until a run has used it (billing data can "
            "take 24 hours)",
        ]
        return InfraPlan(
            provider=self.name,
            engine="cloudformation",
            template_path=TEMPLATE,
            template=template,
            parameters=parameters,
            steps=tuple(steps),
            notes=tuple(notes),
            region=params.region,
        )

    # --- apply ----------------------------------------------------------------------------------

    def apply(self, plan: InfraPlan) -> list[str]:
        region = plan.region
        cfn = self.clients.get("cloudformation", region)
        done: list[str] = []
        changed = False
        for step in plan.steps:
            if step.api == "cloudformation:CreateChangeSet":
                changed = self._create_change_set(cfn, step.body, done)
            elif step.api == "cloudformation:ExecuteChangeSet":
                if changed:
                    self._execute(cfn, step.body, done)
            elif step.api == "ce:UpdateCostAllocationTagsStatus":
                self._activate(step.body, done)
            else:
                raise ProviderError(f"aws infra: unknown step {step.api}", ErrorKind.API)
        return done

    def _create_change_set(self, cfn: Any, body: dict[str, Any], done: list[str]) -> bool:
        """Create the change set and wait for it; False when it would change nothing."""
        stack = sdk.describe_stack(cfn, body["StackName"])
        status = stack["StackStatus"] if stack else ""
        if status == "ROLLBACK_COMPLETE":
            raise ProviderError(
                f"stack {body['StackName']} failed to create and was rolled back; delete it "
                f"(aws cloudformation delete-stack --stack-name {body['StackName']}) and apply "
                "again",
                ErrorKind.CONFLICT,
            )
        kind = "UPDATE" if stack and status != "REVIEW_IN_PROGRESS" else "CREATE"
        sent = {**body, "ChangeSetType": kind}
        sdk.call(lambda: cfn.create_change_set(**sent), "cloudformation CreateChangeSet")
        ident = {"StackName": body["StackName"], "ChangeSetName": body["ChangeSetName"]}
        described = _wait(
            lambda: sdk.call(
                lambda: cfn.describe_change_set(**ident), "cloudformation DescribeChangeSet"
            ),
            lambda d: d["Status"] in ("CREATE_COMPLETE", "FAILED"),
            f"change set {body['ChangeSetName']}",
        )
        if described["Status"] == "FAILED":
            reason = described.get("StatusReason", "")
            if "didn't contain changes" in reason or "No updates" in reason:
                sdk.call(lambda: cfn.delete_change_set(**ident), "cloudformation DeleteChangeSet")
                done.append(f"stack {body['StackName']} is up to date (no changes)")
                return False
            raise ProviderError(
                f"CloudFormation refused change set {body['ChangeSetName']}: {reason}",
                ErrorKind.API,
            )
        count = len(described.get("Changes", []))
        done.append(f"change set {body['ChangeSetName']} ({kind}, {count} changes) created")
        return True

    def _execute(self, cfn: Any, body: dict[str, Any], done: list[str]) -> None:
        sdk.call(lambda: cfn.execute_change_set(**body), "cloudformation ExecuteChangeSet")
        stack = _wait(
            lambda: sdk.describe_stack(cfn, body["StackName"]) or {"StackStatus": "GONE"},
            lambda s: not s["StackStatus"].endswith("_IN_PROGRESS"),
            f"stack {body['StackName']}",
        )
        status = stack["StackStatus"]
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise ProviderError(
                f"stack {body['StackName']} ended {status}: "
                + (_failure_reasons(cfn, body["StackName"]) or stack.get("StackStatusReason", "")),
                ErrorKind.API,
            )
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(outputs.items()))
        done.append(f"stack {body['StackName']} {status}" + (f": {shown}" if shown else ""))

    def _activate(self, body: dict[str, Any], done: list[str]) -> None:
        ce = self.clients.get("ce", GLOBAL_REGION)
        answer = sdk.retried(
            lambda: ce.update_cost_allocation_tags_status(**body),
            "ce UpdateCostAllocationTagsStatus",
        )
        refused = {e["TagKey"]: e for e in answer.get("Errors", [])}
        for item in body["CostAllocationTagsStatus"]:
            key = item["TagKey"]
            if key in refused:
                err = refused[key]
                done.append(
                    f"cost allocation tag {key} not activated: {err.get('Code', '')} "
                    f"{err.get('Message', '')}".rstrip()
                )
            else:
                done.append(f"cost allocation tag {key} activated")

    # --- check ----------------------------------------------------------------------------------

    def check(self, params: InfraParams) -> list[Finding]:
        _check_params(params)
        account = params.settings.get("account_id") or self._account(params.region)
        named = names(params, account)
        findings = self._bucket(params.region, named["bucket"])
        findings.append(self._key(params.region, named["alias"]))
        findings.append(self._role(params.region, named["role"]))
        findings.append(self._budget(params, account, named["budget"]))
        findings.append(self._export(named["export"]))
        findings += self._tags(tag_keys(params))
        return findings

    def _account(self, region: str) -> str:
        sts = self.clients.get("sts", region)
        return sdk.call(lambda: sts.get_caller_identity()["Account"], "sts GetCallerIdentity")

    def _bucket(self, region: str, bucket: str) -> list[Finding]:
        s3 = self.clients.get("s3", region)
        fix = "recipe infra apply --provider aws"
        if (
            sdk.read_or_none(lambda: s3.head_bucket(Bucket=bucket), f"s3 HeadBucket {bucket}")
            is None
        ):
            return [Finding("bucket", "missing", f"no bucket {bucket}", fix)]
        found = [Finding("bucket", "ok", f"s3://{bucket}")]
        found.append(_encryption(s3, bucket))
        found.append(_public_access(s3, bucket))
        versioning = sdk.call(
            lambda: s3.get_bucket_versioning(Bucket=bucket), f"s3 GetBucketVersioning {bucket}"
        )
        if versioning.get("Status") == "Enabled":
            found.append(Finding("bucket versioning", "ok", f"{bucket}: Enabled"))
        else:
            found.append(
                Finding(
                    "bucket versioning",
                    "weak",
                    f"{bucket}: {versioning.get('Status', 'never enabled')}",
                    f"aws s3api put-bucket-versioning --bucket {bucket} "
                    "--versioning-configuration Status=Enabled, or " + fix,
                )
            )
        return found

    def _key(self, region: str, alias: str) -> Finding:
        kms = self.clients.get("kms", region)
        key = sdk.read_or_none(lambda: kms.describe_key(KeyId=alias), f"kms DescribeKey {alias}")
        if key is None:
            return Finding(
                "kms key", "missing", f"no key {alias}", "recipe infra apply --provider aws"
            )
        key_id = key["KeyMetadata"]["KeyId"]
        rotation = sdk.call(
            lambda: kms.get_key_rotation_status(KeyId=key_id), f"kms GetKeyRotationStatus {alias}"
        )
        if rotation.get("KeyRotationEnabled"):
            return Finding("kms key rotation", "ok", f"{alias} ({key_id}): rotation on")
        return Finding(
            "kms key rotation",
            "weak",
            f"{alias} ({key_id}): rotation off",
            f"aws kms enable-key-rotation --key-id {key_id}",
        )

    def _role(self, region: str, role: str) -> Finding:
        iam = self.clients.get("iam", region)
        found = sdk.read_or_none(lambda: iam.get_role(RoleName=role), f"iam GetRole {role}")
        if found is None:
            return Finding(
                "execution role", "missing", f"no role {role}", "recipe infra apply --provider aws"
            )
        trust = _document(found["Role"].get("AssumeRolePolicyDocument", {}))
        if "sagemaker.amazonaws.com" not in json.dumps(trust):
            return Finding(
                "execution role",
                "weak",
                f"{role} is not trusted by sagemaker.amazonaws.com",
                "add sagemaker.amazonaws.com to its trust policy, or recipe infra apply",
            )
        allowed = _allowed_actions(iam, role)
        missing = [a for a in REQUIRED_ACTIONS if not _covered(a, allowed)]
        if missing:
            return Finding(
                "execution role",
                "weak",
                f"{role} lacks {', '.join(missing)}",
                "recipe infra apply --provider aws (policy <prefix>-sagemaker-execution)",
            )
        return Finding(
            "execution role",
            "ok",
            f"{role}: trusted by SageMaker, allows the {len(REQUIRED_ACTIONS)} actions recipes "
            "use (resources not compared)",
        )

    def _budget(self, params: InfraParams, account: str, name: str) -> Finding:
        budgets = self.clients.get("budgets", GLOBAL_REGION)
        wanted = f"user:cost_center${params.cost_center}"
        all_budgets = _budgets(budgets, account)
        on_center = [
            b for b in all_budgets if wanted in (b.get("CostFilters") or {}).get("TagKeyValue", [])
        ]
        fix = "recipe infra apply --provider aws"
        if not on_center:
            ours = [b for b in all_budgets if b["BudgetName"] == name]
            if ours:
                return Finding("budget", "weak", f"{name} does not filter on {wanted}", fix)
            return Finding(
                "budget", "missing", f"no budget filters on cost center {params.cost_center}", fix
            )
        budget = next((b for b in on_center if b["BudgetName"] == name), on_center[0])
        limit = budget.get("BudgetLimit", {})
        detail = f"{budget['BudgetName']}: {limit.get('Amount')} {limit.get('Unit')} a month"
        if float(limit.get("Amount", 0)) != float(params.monthly_budget):
            return Finding(
                "budget",
                "weak",
                f"{detail}, the recipe says {_decimal(params.monthly_budget)} USD",
                fix,
            )
        return Finding("budget", "ok", detail)

    def _export(self, name: str) -> Finding:
        exports = self.clients.get("bcm-data-exports", GLOBAL_REGION)
        listed = _exports(exports)
        match = next((e for e in listed if e.get("ExportName") == name), None)
        fix = "recipe infra apply --provider aws"
        if match is None:
            return Finding("billing export", "missing", f"no data export {name}", fix)
        arn = match["ExportArn"]
        export = sdk.call(
            lambda: exports.get_export(ExportArn=arn), f"bcm-data-exports GetExport {name}"
        )["Export"]
        query = export.get("DataQuery", {}).get("QueryStatement", "")
        s3 = export.get("DestinationConfigurations", {}).get("S3Destination", {})
        where = f"s3://{s3.get('S3Bucket')}/{s3.get('S3Prefix')}"
        if "FOCUS_1_" not in query:
            return Finding("billing export", "weak", f"{name} is not a FOCUS export ({where})", fix)
        return Finding("billing export", "ok", f"{name}: FOCUS to {where}")

    def _tags(self, keys: list[str]) -> list[Finding]:
        ce = self.clients.get("ce", GLOBAL_REGION)
        status = sdk.cost_allocation_tags(ce, keys)
        found = []
        for key in keys:
            item = f"cost allocation tag {key}"
            if status.get(key) == "Active":
                found.append(Finding(item, "ok", f"{key}: Active"))
            elif key in status:
                found.append(
                    Finding(
                        item,
                        "missing",
                        f"{key}: {status[key]}",
                        "recipe infra apply --provider aws, or Billing → Cost allocation tags",
                    )
                )
            else:
                found.append(
                    Finding(
                        item,
                        "missing",
                        f"{key}: AWS has not seen it on any resource yet",
                        "run a recipe (its resources carry the tag), then apply again",
                    )
                )
        return found


# --- helpers ----------------------------------------------------------------------------------


def _check_params(params: InfraParams) -> None:
    if params.currency.upper() != "USD":
        raise RecipeInputError(
            Problem(
                f"AWS Budgets counts in USD, not {params.currency}",
                file="command line",
                field="--set currency",
                hint="--set currency=USD with the limit in USD",
            )
        )
    map_tags(params.tags, AWS)  # a tag AWS cannot store is an error naming it


def _parameters(params: InfraParams) -> tuple[dict[str, str], list[str]]:
    notes: list[str] = []
    billing = params.settings.get("billing_resources", "true").lower()
    if billing not in ("true", "false"):
        raise RecipeInputError(
            Problem(
                f"billing_resources is {billing!r}",
                file="command line",
                field="--set billing_resources",
                hint="true or false",
            )
        )
    if billing == "true" and params.region not in BILLING_REGIONS:
        billing = "false"
        notes.append(
            f"CloudFormation in {params.region} has no AWS::BCMDataExports::Export or no "
            "AWS::Budgets::Budget: the budget and the FOCUS export are left out; apply the "
            f"template in one of {', '.join(sorted(BILLING_REGIONS))} for them"
        )
    elif billing == "false":
        notes.append("billing_resources=false: no budget and no FOCUS export in this stack")
    emails = list(params.alert_emails)
    if len(emails) > 1:
        notes.append(
            f"the template subscribes one address to budget alerts: {emails[0]}; add "
            f"{', '.join(emails[1:])} in the Budgets console"
        )
    if not emails:
        notes.append("no alert_email: the budget has no notifications (--set alert_email=...)")
    return {
        "Prefix": params.prefix,
        "CostCenter": params.cost_center,
        "MonthlyBudget": _decimal(params.monthly_budget),
        "AlertEmail": emails[0] if emails else "",
        "CreateBillingResources": billing,
    }, notes


def _wait(read: Any, finished: Any, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = read()
        if finished(found):
            return found
        if time.monotonic() > deadline:
            raise ProviderError(
                f"{what} still in progress after {TIMEOUT_S:.0f} s; CloudFormation goes on: "
                "watch it with aws cloudformation describe-stacks",
                ErrorKind.UNREACHABLE,
            )
        time.sleep(POLL_S)


def _failure_reasons(cfn: Any, stack: str) -> str:
    """The reasons of the resources that failed, oldest first (DescribeStackEvents)."""
    events = sdk.call(
        lambda: cfn.describe_stack_events(StackName=stack)["StackEvents"],
        "cloudformation DescribeStackEvents",
    )
    failed = [
        f"{e['LogicalResourceId']} ({e.get('ResourceType', '')}): {e['ResourceStatusReason']}"
        for e in reversed(events)
        if e.get("ResourceStatus", "").endswith("_FAILED") and e.get("ResourceStatusReason")
    ]
    return "; ".join(failed[:5])


def _encryption(s3: Any, bucket: str) -> Finding:
    answer = sdk.read_or_none(
        lambda: s3.get_bucket_encryption(Bucket=bucket), f"s3 GetBucketEncryption {bucket}"
    )
    rules = (answer or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules
    ]
    fix = "recipe infra apply --provider aws (SSE-KMS with the stack's key, bucket key on)"
    if any(a in ("aws:kms", "aws:kms:dsse") for a in algorithms):
        return Finding("bucket encryption", "ok", f"{bucket}: SSE-KMS")
    if algorithms:
        # S3 encrypts every new object with SSE-S3 since 2023; that is not a key we control.
        return Finding("bucket encryption", "weak", f"{bucket}: {', '.join(algorithms)}", fix)
    return Finding("bucket encryption", "missing", f"{bucket}: no default encryption", fix)


def _public_access(s3: Any, bucket: str) -> Finding:
    answer = sdk.read_or_none(
        lambda: s3.get_public_access_block(Bucket=bucket), f"s3 GetPublicAccessBlock {bucket}"
    )
    fix = (
        f"aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration "
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,"
        "RestrictPublicBuckets=true"
    )
    if answer is None:
        return Finding("bucket public access", "missing", f"{bucket}: no public access block", fix)
    config = answer["PublicAccessBlockConfiguration"]
    off = [k for k in _PUBLIC_FLAGS if not config.get(k)]
    if off:
        return Finding("bucket public access", "weak", f"{bucket}: {', '.join(off)} off", fix)
    return Finding("bucket public access", "ok", f"{bucket}: all four blocks on")


_PUBLIC_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def _document(doc: Any) -> dict[str, Any]:
    """A policy document as boto3 answers it: parsed already, or URL-encoded JSON text."""
    if isinstance(doc, str):
        return json.loads(urllib.parse.unquote(doc))
    return doc


def _allowed_actions(iam: Any, role: str) -> set[str]:
    """Every action an Allow statement of the role's policies names (lower case, may be
    wildcards); inline and attached, AWS-managed included."""
    docs: list[dict[str, Any]] = []
    inline = sdk.call(lambda: iam.list_role_policies(RoleName=role), "iam ListRolePolicies")
    for name in inline.get("PolicyNames", []):
        doc = sdk.call(
            lambda name=name: iam.get_role_policy(RoleName=role, PolicyName=name),
            "iam GetRolePolicy",
        )["PolicyDocument"]
        docs.append(_document(doc))
    attached = sdk.call(
        lambda: iam.list_attached_role_policies(RoleName=role), "iam ListAttachedRolePolicies"
    )
    for item in attached.get("AttachedPolicies", []):
        arn = item["PolicyArn"]
        version = sdk.call(lambda arn=arn: iam.get_policy(PolicyArn=arn), "iam GetPolicy")[
            "Policy"
        ]["DefaultVersionId"]
        doc = sdk.call(
            lambda arn=arn, version=version: iam.get_policy_version(
                PolicyArn=arn, VersionId=version
            ),
            "iam GetPolicyVersion",
        )["PolicyVersion"]["Document"]
        docs.append(_document(doc))
    return {a.lower() for doc in docs for a in _actions(doc)}


def _actions(doc: dict[str, Any]) -> Iterable[str]:
    statements = doc.get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        if st.get("Effect") != "Allow" or "Action" not in st:
            continue
        actions = st["Action"]
        yield from [actions] if isinstance(actions, str) else actions


def _covered(action: str, allowed: set[str]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in allowed)


def _budgets(budgets: Any, account: str) -> list[dict[str, Any]]:
    return _all_pages(
        lambda **body: budgets.describe_budgets(AccountId=account, **body),
        "Budgets",
        "budgets DescribeBudgets",
    )


def _exports(exports: Any) -> list[dict[str, Any]]:
    return _all_pages(exports.list_exports, "Exports", "bcm-data-exports ListExports")


def _all_pages(call: Any, key: str, what: str) -> list[dict[str, Any]]:
    """Every item of a NextToken-paged AWS list call."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        body = {"NextToken": token} if token else {}
        page = sdk.call(lambda body=body: call(**body), what)
        found += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return found


def _decimal(amount: float) -> str:
    """An amount as AWS Budgets takes it: plain decimal digits, cents kept (never 1e+06)."""
    return f"{amount:.2f}".rstrip("0").rstrip(".")
