"""A Google Cloud project's bootstrap for recipes: infra/gcp/*.tf (Terraform, plain resources)
filled from the recipe as a .tfvars file, applied with the Terraform CLI (or, as the plan shows,
with Infrastructure Manager), and checked by reading the resources back through the SDKs and
REST APIs.

Terraform is a separate program, not a library: `apply` runs it when it is on PATH, and
otherwise writes the .tfvars file and says, first line, that nothing was applied and which
commands to run. Names are computed here as the template computes them (locals in main.tf),
so `check` finds the resources without the Terraform state.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import Finding, InfraParams, InfraPlan, Request
from providers.gcp import sdk
from recipes.errors import ErrorKind, Problem, ProviderError, RecipeInputError
from recipes.tags import GCP as GCP_LABEL_RULES
from recipes.tags import map_tags

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = Path("infra") / "gcp"
TEMPLATE_FILES = ("versions.tf", "variables.tf", "main.tf", "outputs.tf")
COST_CENTER_LABEL = "cost_center"  # what the template's budget filters on
BILLING_EXPORT_LOCATION = "US"  # a multi-region: the export backfills the previous month
EXPORT_TABLE_PREFIX = "gcp_billing_export_"
DETAILED_EXPORT_PREFIX = "gcp_billing_export_resource_v1_"
MAX_ALERT_EMAILS = 5  # a budget takes at most 5 monitoring notification channels
# Bounds on each Terraform command (a first apply creates a key, a bucket and IAM bindings,
# minutes at most; init downloads the provider).
TERRAFORM_TIMEOUT_S = 1800.0
SHELL, ALTERNATIVE, WRITE = "shell", "shell:alternative", "file:write"

# What the jobs and endpoints service account must hold (main.tf, local.project_roles).
PROJECT_ROLES = (
    "roles/aiplatform.user",
    "roles/artifactregistry.reader",
    "roles/logging.logWriter",
    "roles/monitoring.viewer",
)
BUCKET_ROLES = ("roles/storage.objectAdmin", "roles/storage.admin")  # either is enough

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


@dataclass(frozen=True)
class Names:
    project: str
    region: str
    bucket: str
    key_ring: str
    key: str
    service_account: str  # its e-mail
    dataset: str
    deployment: str  # the Infrastructure Manager deployment
    tfvars: str  # relative to the template folder

    @property
    def key_name(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.region}/keyRings/{self.key_ring}"
            f"/cryptoKeys/{self.key}"
        )


def names(params: InfraParams) -> Names:
    """Every resource's name, as main.tf's locals build them."""
    project, prefix = project_of(params), params.prefix
    return Names(
        project=project,
        region=params.region,
        bucket=f"{prefix}-{project}-recipe",
        key_ring=f"{prefix}-recipe",
        key=f"{prefix}-storage",
        service_account=f"{prefix}-jobs@{project}.iam.gserviceaccount.com",
        dataset=f"{prefix.replace('-', '_')}_billing_export",
        deployment=f"recipe-account-{prefix}",
        tfvars=f"recipe-{prefix}.tfvars",
    )


def project_of(params: InfraParams) -> str:
    project = _setting(params, "project", "the bucket, key and service account live there")
    if not _PROJECT.match(project):
        raise RecipeInputError(
            Problem(
                f"{project[:40]!r} is not a Google Cloud project ID",
                file="command line",
                field="--set project",
                hint="6-30 lower-case letters, digits and hyphens, e.g. --set project=ml-dev-123",
            )
        )
    return project


# `plan` needs no billing account (it shows what would be sent); `apply` refuses this.
UNSET_BILLING_ACCOUNT = "SET-BILLING-ACCOUNT"


def billing_account_of(params: InfraParams, required: bool = True) -> str:
    if not required and not params.settings.get("billing_account"):
        return UNSET_BILLING_ACCOUNT
    given = _setting(params, "billing_account", "the budget is created on it")
    account = given.removeprefix("billingAccounts/").upper()
    if not _BILLING_ACCOUNT.match(account):
        raise RecipeInputError(
            Problem(
                f"{given[:40]!r} is not a billing account ID",
                file="command line",
                field="--set billing_account",
                hint="XXXXXX-XXXXXX-XXXXXX (gcloud billing accounts list)",
            )
        )
    return account


def _setting(params: InfraParams, key: str, why: str) -> str:
    value = params.settings.get(key, "")
    if not value:
        where = "compute.gcp.project in the recipe (--recipe R), or " if key == "project" else ""
        raise RecipeInputError(
            Problem(
                f"no Google Cloud {key.replace('_', ' ')}: {why}",
                file="command line",
                field=f"--set {key}",
                hint=f"{where}--set {key}=VALUE",
            )
        )
    return value


def cost_center_label(params: InfraParams) -> str:
    """The cost center as GCP stores it in a label (lower case, _ for other characters)."""
    return map_tags({COST_CENTER_LABEL: params.cost_center}, GCP_LABEL_RULES).tags[
        COST_CENTER_LABEL
    ]


def _emails(params: InfraParams) -> list[str]:
    problems = [
        Problem(
            f"{e[:60]!r} is not an e-mail address", file="command line", field="--set alert_email"
        )
        for e in params.alert_emails
        if not _EMAIL.match(e)
    ]
    if len(params.alert_emails) > MAX_ALERT_EMAILS:
        problems.append(
            Problem(
                f"{len(params.alert_emails)} alert e-mails; a budget takes at most "
                f"{MAX_ALERT_EMAILS} notification channels",
                file="command line",
                field="--set alert_email",
                hint="use a group address",
            )
        )
    if problems:
        raise RecipeInputError(problems)
    return list(params.alert_emails)


# --- tfvars ----------------------------------------------------------------------------------


def hcl_string(value: str) -> str:
    """A quoted HCL string: JSON's escapes are HCL's, and ${ and %{ must not start templates."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, str):
        return hcl_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        rows = "".join(f"  {hcl_string(k)} = {hcl_value(v)}\n" for k, v in value.items())
        return "{\n" + rows + "}"
    raise TypeError(f"no HCL form for {type(value).__name__}")


def render_tfvars(values: dict[str, Any]) -> str:
    """terraform.tfvars text for the template's variables (what -var-file and
    Infrastructure Manager's --inputs-file read)."""
    width = max(len(k) for k in values)
    lines = ["# Written by `recipe infra plan|apply --provider gcp`; inputs of infra/gcp/*.tf."]
    lines += [f"{k.ljust(width)} = {hcl_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


class GcpInfra:
    name = "gcp"

    def __init__(self, **clients: Any) -> None:
        """`storage`: a google-cloud-storage Client; `bigquery`: a google-cloud-bigquery
        Client; `session`: an authorized requests session for the REST APIs (IAM, Resource
        Manager, Cloud KMS, Billing Budgets); `rest_endpoint`: one base URL for those REST
        APIs (a test's fake); `root`: where apply writes the .tfvars and runs Terraform (the
        repository, by default); `terraform`: the Terraform executable (found on PATH when
        not given). Real clients are built from Application Default Credentials on first use."""
        self.clients = clients
        self.root = Path(clients.get("root") or REPO)
        self._sdk = sdk.Clients(storage=clients.get("storage"), session=clients.get("session"))

    # --- plan ----------------------------------------------------------------------------

    def plan(self, params: InfraParams) -> InfraPlan:
        """The .tfvars filled from the recipe and the exact commands that apply them; no
        network."""
        n = names(params)
        values = self._values(params, n)
        tfvars = render_tfvars(values)
        return InfraPlan(
            provider=self.name,
            engine="terraform",
            template_path=str(TEMPLATE_DIR),
            template=self._template(),
            parameters=values,
            steps=self._steps(n, tfvars, values["labels"]),
            notes=self._notes(params, n),
            region=params.region,
        )

    def _values(self, params: InfraParams, n: Names) -> dict[str, Any]:
        # The cost center as a label value (lower case, GCP's characters): the budget's
        # filter must match the labels the resources carry.
        tags = {**params.tags, COST_CENTER_LABEL: params.cost_center}
        labels = map_tags(tags, GCP_LABEL_RULES).tags
        budget = params.monthly_budget
        return {
            "project": n.project,
            "region": params.region,
            "prefix": params.prefix,
            "labels": labels,
            "cost_center": labels[COST_CENTER_LABEL],
            "monthly_budget": int(budget) if float(budget).is_integer() else budget,
            "currency": params.currency,
            "billing_account": billing_account_of(params, required=False),
            "alert_emails": _emails(params),
            "billing_export_location": BILLING_EXPORT_LOCATION,
        }

    @staticmethod
    def _template() -> str:
        folder = REPO / TEMPLATE_DIR
        return "\n".join(
            f"# ---- {TEMPLATE_DIR / name} ----\n{(folder / name).read_text()}"
            for name in TEMPLATE_FILES
        )

    @staticmethod
    def _steps(n: Names, tfvars: str, labels: dict[str, str]) -> tuple[Request, ...]:
        chdir = f"terraform -chdir={TEMPLATE_DIR}"  # -no-color: its errors are quoted to us
        path = str(TEMPLATE_DIR / n.tfvars)
        # Infrastructure Manager runs the same folder as a deployment (gcloud reference:
        # `gcloud infra-manager deployments apply`): --local-source uploads it, --inputs-file
        # is the .tfvars; it needs a service account of yours holding roles/config.agent and
        # the roles to create these resources ($INFRA_MANAGER_SA, its e-mail).
        deployment = f"projects/{n.project}/locations/{n.region}/deployments/{n.deployment}"
        label_flag = ",".join(f"{k}={v}" for k, v in labels.items())
        infra_manager = (
            f"gcloud infra-manager deployments apply {deployment}"
            f" --service-account=projects/{n.project}/serviceAccounts/$INFRA_MANAGER_SA"
            f" --local-source={TEMPLATE_DIR} --inputs-file={path}"
            + (f" --labels={shlex.quote(label_flag)}" if label_flag else "")
        )
        return (
            Request(api=WRITE, body={"path": path, "content": tfvars}),
            Request(api=SHELL, body={"command": f"{chdir} init -input=false -no-color"}),
            Request(
                api=SHELL,
                body={
                    "command": f"{chdir} plan -input=false -no-color -var-file={n.tfvars} "
                    f"-out={n.deployment}.tfplan"
                },
            ),
            Request(
                api=SHELL,
                body={"command": f"{chdir} apply -input=false -no-color {n.deployment}.tfplan"},
            ),
            Request(
                api=ALTERNATIVE,
                body={
                    "command": infra_manager,
                    "instead_of": "the three terraform commands; apply never runs it",
                },
            ),
        )

    @staticmethod
    def _notes(params: InfraParams, n: Names) -> tuple[str, ...]:
        notes = [
            f"project {n.project}, region {n.region}: bucket gs://{n.bucket} (CMEK {n.key}, "
            f"public access prevention enforced), service account {n.service_account}, "
            f"billing export dataset {n.project}.{n.dataset}",
            f"budget {params.monthly_budget:g} {params.currency} a month on the billing "
            f"account, on costs labelled {COST_CENTER_LABEL}={params.cost_center} (the "
            "currency must be the billing account's)",
            "Terraform cannot turn on the Cloud Billing export: after apply, enable "
            "Billing > Billing export > BigQuery export > Detailed usage cost into "
            f"{n.project}.{n.dataset} (https://cloud.google.com/billing/docs/how-to/"
            "export-data-bigquery-setup)",
            f"the key ring {n.key_ring} can never be deleted; re-applies reuse it (with a new "
            "Terraform state, `terraform import google_kms_key_ring.recipe "
            f"projects/{n.project}/locations/{n.region}/keyRings/{n.key_ring}` first)",
            "apply runs Terraform when it is on PATH; otherwise it writes the .tfvars and "
            "prints these commands. Alternative: Infrastructure Manager (the "
            "shell:alternative step; set INFRA_MANAGER_SA first)",
        ]
        if not params.settings.get("billing_account"):
            notes.append(
                f"billing_account is not set: the plan shows {UNSET_BILLING_ACCOUNT}; apply "
                "refuses until --set billing_account=XXXXXX-XXXXXX-XXXXXX is given"
            )
        if not params.alert_emails:
            notes.append(
                "no alert e-mail: budget alerts go to the billing account's admins and users "
                "only (--set alert_email=a@example.com adds up to 5)"
            )
        return tuple(notes)

    # --- apply ---------------------------------------------------------------------------

    def apply(self, plan: InfraPlan) -> list[str]:
        """Write the .tfvars, then run the plan's terraform commands, each bounded; without
        Terraform on PATH, say that nothing was applied and which commands to run."""
        if plan.parameters.get("billing_account") == UNSET_BILLING_ACCOUNT:
            raise RecipeInputError(
                Problem(
                    "no Google Cloud billing account: the budget is created on it",
                    file="command line",
                    field="--set billing_account",
                    hint="--set billing_account=XXXXXX-XXXXXX-XXXXXX (gcloud billing accounts list)",
                )
            )
        done: list[str] = []
        terraform = self.clients.get("terraform") or shutil.which("terraform")
        commands = [s.body["command"] for s in plan.steps if s.api == SHELL]
        for step in plan.steps:
            if step.api == WRITE:
                target = self.root / step.body["path"]
                target.write_text(step.body["content"])
                done.append(f"wrote {step.body['path']}")
            elif step.api not in (SHELL, ALTERNATIVE):
                raise ProviderError(f"not a Terraform step: {step.api}")
        if not terraform:
            return [
                "NOT APPLIED: Terraform is not installed here (not on PATH); nothing was "
                "created. Run these from the repository root:",
                *done,
                *(f"  {c}" for c in commands),
                "or with Infrastructure Manager instead:",
                *(f"  {s.body['command']}" for s in plan.steps if s.api == ALTERNATIVE),
            ]
        for command in commands:
            done.append(self._run(str(terraform), command))
        return done

    def _run(self, terraform: str, command: str) -> str:
        argv = shlex.split(command)
        argv[0] = terraform
        env = {**os.environ, "TF_IN_AUTOMATION": "1"}
        try:
            result = subprocess.run(
                argv, cwd=self.root, env=env, capture_output=True, text=True,
                timeout=TERRAFORM_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"`{command}` still running after {TERRAFORM_TIMEOUT_S:.0f} s: stopped; run it "
                "again (Terraform resumes from its state)",
                ErrorKind.API,
            ) from None
        if result.returncode != 0:
            reason = _last_error(result.stderr or result.stdout)
            raise ProviderError(
                f"`{command}` failed (exit {result.returncode}): {reason}", ErrorKind.API
            )
        return f"ran: {command}"

    # --- check ---------------------------------------------------------------------------

    def check(self, params: InfraParams) -> list[Finding]:
        n, account = names(params), billing_account_of(params)  # bad input before any call
        bucket = sdk.storage_bucket_or_none(
            self._sdk.storage(n.project), n.bucket, f"reading bucket {n.bucket}"
        )
        findings = _bucket(bucket, n)
        findings.append(_key(self._rest, n))
        identity = _service_account(self._rest, n)
        findings += identity
        if bucket is not None and identity[0].status != "missing":
            findings.append(_bucket_role(bucket, n))
        findings.append(_budget(self._rest, account, n, cost_center_label(params)))
        findings += _billing_export(self._bigquery(n), n)
        return findings

    def _bigquery(self, n: Names) -> Any:
        return self.clients.get("bigquery") or sdk.bigquery_client(n.project)

    def _rest(self, api: str, path: str) -> tuple[Any, str]:
        """The authorized session and the URL of `path` on one of the REST APIs."""
        base = self.clients.get("rest_endpoint") or sdk.INFRA_ENDPOINTS[api]
        return self._sdk.session(base), f"{base.rstrip('/')}{path}"


def _last_error(text: str) -> str:
    """Terraform's own error lines ("Error: ..." and what follows), not the whole log."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "Error" in ln), max(0, len(lines) - 3))
    return " ".join(lines[start : start + 4])[:600] or "(no output)"


APPLY = "recipe infra apply --provider gcp"


def _bucket(bucket: Any, n: Names) -> list[Finding]:
    if bucket is None:
        return [Finding("bucket", "missing", f"no bucket gs://{n.bucket} in {n.project}", APPLY)]
    found = [Finding("bucket", "ok", f"gs://{n.bucket} in {bucket.location}")]
    key = bucket.default_kms_key_name
    if not key:
        found.append(
            Finding(
                "bucket encryption",
                "weak",
                f"gs://{n.bucket}: Google-managed keys, no default KMS key",
                f"set the bucket's default key to {n.key_name}: " + APPLY,
            )
        )
    else:
        ours = "" if key.split("/cryptoKeyVersions/")[0] == n.key_name else " (not the recipe key)"
        found.append(Finding("bucket encryption", "ok", f"gs://{n.bucket}: CMEK {key}{ours}"))
    found.append(_public_access(bucket, n))
    found.append(
        Finding("bucket versioning", "ok", f"gs://{n.bucket}: on")
        if bucket.versioning_enabled
        else Finding(
            "bucket versioning",
            "weak",
            f"gs://{n.bucket}: off (an overwritten checkpoint or output is lost)",
            "turn versioning on: " + APPLY,
        )
    )
    return found


def _public_access(bucket: Any, n: Names) -> Finding:
    iam = bucket.iam_configuration
    pap = iam.public_access_prevention
    uniform = iam.uniform_bucket_level_access_enabled
    if pap == "enforced" and uniform:
        return Finding(
            "bucket public access", "ok", f"gs://{n.bucket}: prevention enforced, uniform access"
        )
    return Finding(
        "bucket public access",
        "weak",
        f"gs://{n.bucket}: public access prevention {pap or 'unset'}, uniform bucket-level "
        f"access {'on' if uniform else 'off'}",
        "enforce public access prevention and uniform access: " + APPLY,
    )


def _key(rest: Any, n: Names) -> Finding:
    session, url = rest("kms", f"/v1/{n.key_name}")
    key = sdk.get_json_or_none(session, url, f"reading KMS key {n.key}")
    if key is None:
        return Finding("kms key", "missing", f"no key {n.key} in key ring {n.key_ring}", APPLY)
    rotation = key.get("rotationPeriod")
    state = (key.get("primary") or {}).get("state", "")
    if not rotation or state != "ENABLED":
        return Finding(
            "kms key",
            "weak",
            f"{n.key}: rotation {rotation or 'off'}, primary version {state or 'none'}",
            "rotate every 90 days with an enabled primary version: " + APPLY,
        )
    return Finding("kms key", "ok", f"{n.key}: rotated every {rotation}, primary {state}")


def _service_account(rest: Any, n: Names) -> list[Finding]:
    email = n.service_account
    session, url = rest("iam", f"/v1/projects/{n.project}/serviceAccounts/{email}")
    account = sdk.get_json_or_none(session, url, f"reading service account {email}")
    if account is None:
        return [Finding("service account", "missing", f"no service account {email}", APPLY)]
    if account.get("disabled"):
        found = [Finding("service account", "weak", f"{email} is disabled", "enable it")]
    else:
        found = [Finding("service account", "ok", email)]
    member = f"serviceAccount:{email}"
    session, url = rest("resourcemanager", f"/v1/projects/{n.project}:getIamPolicy")
    policy = sdk.post_json(
        session,
        url,
        {"options": {"requestedPolicyVersion": 3}},
        f"reading {n.project}'s IAM policy",
    )
    held = _roles_of(policy.get("bindings") or [], member)
    lacking = [r for r in PROJECT_ROLES if r not in held]
    found.append(
        Finding(
            "service account roles",
            "missing" if len(lacking) == len(PROJECT_ROLES) else "weak",
            f"{email} lacks {', '.join(lacking)} on {n.project}",
            APPLY,
        )
        if lacking
        else Finding("service account roles", "ok", f"{', '.join(PROJECT_ROLES)} on {n.project}")
    )
    return found


def _bucket_role(bucket: Any, n: Names) -> Finding:
    member = f"serviceAccount:{n.service_account}"
    bindings = sdk.storage_bucket_bindings(bucket, f"reading gs://{n.bucket}'s IAM policy")
    held = sorted(_roles_of(bindings, member) & set(BUCKET_ROLES))
    if held:
        return Finding("service account bucket role", "ok", f"{held[0]} on gs://{n.bucket}")
    return Finding(
        "service account bucket role",
        "missing",
        f"{n.service_account} cannot read or write gs://{n.bucket} (no storage.objectAdmin)",
        "grant roles/storage.objectAdmin on the bucket: " + APPLY,
    )


def _roles_of(bindings: list[dict[str, Any]], member: str) -> set[str]:
    """Roles a member holds unconditionally (a condition may limit what a role grants)."""
    return {
        str(b.get("role"))
        for b in bindings
        if member in (b.get("members") or []) and not b.get("condition")
    }


def _budget(rest: Any, account: str, n: Names, cost_center: str) -> Finding:
    session, url = rest("budgets", f"/v1/billingAccounts/{account}/budgets")
    budgets = sdk.get_all_pages(
        session, url, "budgets", f"listing budgets of billing account {account}",
        headers={"x-goog-user-project": n.project},
    )  # fmt: skip
    mine = [b for b in budgets if cost_center in _label_values(b, COST_CENTER_LABEL)]
    if not mine:
        return Finding(
            "budget",
            "missing",
            f"no budget on billing account {account} filters on {COST_CENTER_LABEL}={cost_center}",
            APPLY,
        )
    budget = mine[0]
    what = f"{budget.get('displayName') or budget.get('name')}: {_amount(budget)}"
    rules = budget.get("thresholdRules") or []
    notify = budget.get("notificationsRule") or {}
    silent = notify.get("disableDefaultIamRecipients") and not notify.get(
        "monitoringNotificationChannels"
    )
    if not rules or silent:
        return Finding(
            "budget",
            "weak",
            f"{what}, {'no threshold rules' if not rules else 'nobody is notified'}",
            f"{APPLY} --set alert_email=you@example.com",
        )
    return Finding("budget", "ok", f"{what} on {COST_CENTER_LABEL}={cost_center}")


def _label_values(budget: dict[str, Any], key: str) -> list[str]:
    """budgetFilter.labels is a map of label key to a list of values (a ListValue in JSON)."""
    values = ((budget.get("budgetFilter") or {}).get("labels") or {}).get(key) or []
    return [str(v) for v in (values if isinstance(values, list) else [values])]


def _amount(budget: dict[str, Any]) -> str:
    amount = budget.get("amount") or {}
    if amount.get("lastPeriodAmount") is not None:
        return "last period's spend"
    money = amount.get("specifiedAmount") or {}
    return f"{money.get('units', '0')} {money.get('currencyCode', '')} a month".replace("  ", " ")


def _billing_export(client: Any, n: Names) -> list[Finding]:
    ref = f"{n.project}.{n.dataset}"
    dataset = sdk.bigquery_dataset_or_none(client, ref, f"reading dataset {ref}")
    if dataset is None:
        return [Finding("billing export dataset", "missing", f"no dataset {ref}", APPLY)]
    found = [Finding("billing export dataset", "ok", f"{ref} in {dataset.location}")]
    tables = sdk.bigquery_table_ids(client, ref, f"listing tables of {ref}")
    export = sorted(t for t in tables if t.startswith(EXPORT_TABLE_PREFIX))
    enable = (
        f"enable Billing > Billing export > BigQuery export > Detailed usage cost into {ref} "
        "(Terraform cannot); tables appear within hours"
    )
    if not export:
        found.append(
            Finding(
                "billing export", "missing", f"no {EXPORT_TABLE_PREFIX}* table in {ref}", enable
            )
        )
    elif not any(t.startswith(DETAILED_EXPORT_PREFIX) for t in export):
        found.append(
            Finding(
                "billing export",
                "weak",
                f"{', '.join(export)} in {ref}: the standard export only, no resource-level "
                "detailed export",
                enable,
            )
        )
    else:
        found.append(Finding("billing export", "ok", f"{', '.join(export)} in {ref}"))
    return found
