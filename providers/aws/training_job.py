"""Amazon SageMaker training jobs: the recipe becomes one CreateTrainingJob request.

plan() is pure: it resolves the instance type from the hardware catalog, builds
the scripts archive (content-addressed), and writes down every request submit()
will make: S3 uploads (code, local data, recipe.json) and the CreateTrainingJob
body. submit() sends exactly those, skipping uploads already present with the
same hash. Job names are deterministic (recipe, content hash, attempt), so a
second `run` of the same recipe finds the first job instead of launching again.

HyperPod (compute.aws.target: hyperpod) is planned by providers.aws_hyperpod.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from providers import cloud
from providers.aws_images import pytorch_training_image
from providers.base import (
    Capabilities,
    Plan,
    ProviderError,
    Request,
    RunIdentity,
    RunRef,
    RunStatus,
    State,
    check_capabilities,
)
from providers.packaging import ARCHIVE_NAME, scripts_archive
from recipes.cost import catalog
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import AWS as AWS_TAG_RULES

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MAX_RUNTIME_S = 28 * 24 * 3600  # SageMaker's ceiling
CODE_DIR = "/opt/ml/code"
RECIPE_PATH = "/opt/ml/input/data/recipe/recipe.json"
# Instance families without local NVMe storage: only these accept a volume KMS key.
_EBS_ONLY_FAMILIES = ("ml.m5.", "ml.c5.", "ml.m4.", "ml.c4.", "ml.r5.", "ml.t3.", "ml.p3.")

# SageMaker's primary and secondary statuses -> the common states.
_PRIMARY = {
    "InProgress": State.RUNNING,
    "Completed": State.SUCCEEDED,
    "Failed": State.FAILED,
    "Stopping": State.RUNNING,
    "Stopped": State.CANCELLED,
}
_QUEUED_SECONDARY = {
    "Starting",
    "Pending",
    "LaunchingMLInstances",
    "PreparingTrainingStack",
    "Downloading",
    "DownloadingTrainingImage",
}


class AwsProvider:
    name = "aws"
    capabilities = Capabilities(
        methods=("lora", "qlora", "full"),
        accelerators=catalog.accelerators("aws"),
        spot=True,
        multi_node=True,
        max_processes_per_node=8,
        hyperpod=True,
        remote_data=("s3://",),
        idempotent=True,
    )

    def __init__(self, clients: dict[str, Any] | None = None):
        # Tests inject moto-backed clients; otherwise built per region from the
        # usual AWS credential chain, with SageMaker's retry mode for throttling/5xx.
        self._clients = clients or {}

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        aws = cloud.section(recipe, "aws")
        if aws.target == "hyperpod":
            from providers.aws_hyperpod import plan_job

            return plan_job(recipe, identity, self.capabilities)
        check_capabilities(self.name, self.capabilities, recipe)
        setting = cloud.aws_settings(recipe)
        hardware = cloud.hardware(recipe, "aws", setting.region, aws.instance_type)
        name = identity.run_id
        base = f"{setting.bucket}/runs/{name}"
        tags = cloud.final_tags(recipe, identity, AWS_TAG_RULES)
        archive = scripts_archive()

        uploads = [cloud.upload_code(setting.bucket, archive)]
        data_uploads, channels_uris = cloud.data_uploads(recipe, setting.bucket)
        uploads += data_uploads
        job_recipe = cloud.with_data_locations(recipe, channels_uris)
        recipe_json = cloud.job_config_for(job_recipe, identity, self.name)
        uploads.append(
            Request(
                api="s3:PutObject",
                body={"uri": f"{base}/recipe.json", "content": recipe_json, "run_scoped": True},
            )
        )
        channels = {"code": uploads[0].body["uri"], "recipe": f"{base}/recipe.json"}
        channels.update(channels_uris)
        env = cloud.job_env(recipe, identity, wandb_reference=wandb_reference(aws))
        body = _training_job_body(
            recipe, name, setting, hardware.offer.instance_type, channels, base, env, tags
        )
        _check_limits(body)
        compute = {
            **hardware.compute(recipe),
            "region": setting.region,
            "target": "training-job",
            "image": body["AlgorithmSpecification"]["TrainingImage"],
        }
        return Plan(
            provider=self.name,
            identity=identity,
            requests=(*uploads, Request(api="sagemaker:CreateTrainingJob", body=body)),
            compute=compute,
            tags=tags.tags,
            estimate=hardware.estimate,
            notes=(*hardware.notes, *cloud.rename_notes(tags)),
        )

    # --- submit ----------------------------------------------------------------------

    def submit(self, plan: Plan) -> RunRef:
        if plan.compute.get("target") == "hyperpod":
            from providers.aws_hyperpod import submit_job

            return submit_job(self, plan)
        region = plan.compute["region"]
        sm, s3 = self.client("sagemaker", region), self.client("s3", region)
        name = plan.identity.run_id
        ref = RunRef(provider=self.name, run_id=name, ids={"region": region, "job_name": name})
        if _describe(sm, name) is not None:
            return RunRef(ref.provider, ref.run_id, {**ref.ids, "existing": "true"})
        *uploads, create = plan.requests
        done: list[str] = []
        try:
            for upload in uploads:
                if put_object(s3, upload.body, plan.tags):
                    done.append(upload.body["uri"])
            arn = call(lambda: sm.create_training_job(**create.body), "CreateTrainingJob")
        except ProviderError as exc:
            if "ResourceInUse" in str(exc):  # launched by someone else a moment ago
                return RunRef(ref.provider, ref.run_id, {**ref.ids, "existing": "true"})
            raise ProviderError(f"{exc}{_orphans(s3, uploads, done)}") from None
        return RunRef(ref.provider, ref.run_id, {**ref.ids, "arn": arn["TrainingJobArn"]})

    def latest_attempt(self, plan: Plan) -> int:
        """Highest attempt number already launched for this recipe content (0 if none)."""
        if plan.compute.get("target") == "hyperpod":
            from providers.aws_hyperpod import latest_attempt

            return latest_attempt(self, plan)
        sm = self.client("sagemaker", plan.compute["region"])
        prefix = cloud.name_prefix(plan.identity)
        names = []
        pages = call(lambda: sm.get_paginator("list_training_jobs"), "ListTrainingJobs")
        for page in pages.paginate(NameContains=prefix):
            names += [j["TrainingJobName"] for j in page["TrainingJobSummaries"]]
        return cloud.highest_attempt(prefix, names)

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        if ref.ids.get("target") == "hyperpod":
            from providers.aws_hyperpod import job_status

            return job_status(self, ref)
        sm = self.client("sagemaker", ref.ids["region"])
        job = _describe(sm, ref.ids["job_name"])
        if job is None:
            raise ProviderError(
                f"training job {ref.ids['job_name']} not found in {ref.ids['region']}"
            )
        return status_from_job(ref, job)

    def logs(self, ref: RunRef, follow: bool = False) -> Iterator[str]:
        if ref.ids.get("target") == "hyperpod":
            from providers.aws_hyperpod import job_logs

            yield from job_logs(self, ref, follow)
            return
        logs = self.client("logs", ref.ids["region"])
        tokens: dict[str, str | None] = {}
        while True:
            finished = not follow or self.status(ref).state.terminal
            yield from _new_log_lines(logs, ref.ids["job_name"], tokens)
            if finished:
                return
            time.sleep(5)

    def cancel(self, ref: RunRef) -> RunStatus:
        if ref.ids.get("target") == "hyperpod":
            from providers.aws_hyperpod import job_cancel

            return job_cancel(self, ref)
        sm = self.client("sagemaker", ref.ids["region"])
        current = self.status(ref)
        if current.state.terminal:
            return current
        call(lambda: sm.stop_training_job(TrainingJobName=ref.ids["job_name"]), "StopTrainingJob")
        return self.status(ref)

    # --- clients ---------------------------------------------------------------------

    def client(self, service: str, region: str) -> Any:
        key = f"{service}:{region}"
        if key not in self._clients:
            self._clients[key] = make_client(service, region)
        return self._clients[key]


def make_client(service: str, region: str) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ProviderError("the aws provider needs boto3: pip install '.[aws]'") from None
    # Standard retry mode backs off on throttling and 5xx answers.
    config = Config(retries={"max_attempts": 8, "mode": "standard"}, user_agent_extra="recipe")
    return boto3.client(service, region_name=region, config=config)


# --- the CreateTrainingJob body -----------------------------------------------------------


def _training_job_body(
    recipe: Recipe,
    name: str,
    setting: cloud.AwsSettings,
    instance_type: str,
    channels: dict[str, str],
    base: str,
    env: dict[str, str],
    tags: Any,
) -> dict[str, Any]:
    aws = setting.section
    compute = recipe.compute
    gpu = compute.accelerator != "cpu"
    image = aws.image or pytorch_training_image(setting.region, gpu)
    launch = f"python -m training_scripts.launch --config {RECIPE_PATH}"
    if aws.network_isolation or aws.image:
        launch += " --no-install"  # an isolated container cannot pip install
    bootstrap = (
        f"mkdir -p {CODE_DIR} && tar -xzf /opt/ml/input/data/code/{ARCHIVE_NAME} -C {CODE_DIR} "
        f"&& cd {CODE_DIR} && exec {launch}"
    )
    body: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": setting.role,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["bash", "-c", bootstrap],
        },
        "InputDataConfig": [_channel(n, uri) for n, uri in channels.items()],
        "OutputDataConfig": {"S3OutputPath": f"{base}/output"},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": compute.nodes,
            "VolumeSizeInGB": _volume_gb(recipe),
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": compute.max_runtime},
        "CheckpointConfig": {"S3Uri": f"{base}/checkpoints", "LocalPath": "/opt/ml/checkpoints"},
        "EnableNetworkIsolation": aws.network_isolation,
        "EnableManagedSpotTraining": compute.spot,
        "Environment": env,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.tags.items()],
    }
    if compute.spot:
        wait = aws.spot_max_wait or min(2 * compute.max_runtime, MAX_RUNTIME_S)
        body["StoppingCondition"]["MaxWaitTimeInSeconds"] = wait
    if aws.kms_key:
        body["OutputDataConfig"]["KmsKeyId"] = aws.kms_key
        if instance_type.startswith(_EBS_ONLY_FAMILIES):
            body["ResourceConfig"]["VolumeKmsKeyId"] = aws.kms_key
    if aws.subnets:
        body["VpcConfig"] = {"Subnets": aws.subnets, "SecurityGroupIds": aws.security_groups}
    return body


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def _volume_gb(recipe: Recipe) -> int:
    """Room for the base model (downloaded in the job), checkpoints and the output."""
    from recipes.cost.estimate import model_parameters

    params, _ = model_parameters(recipe.model.base)
    return max(50, int(params * 2 * 4 / 1e9) + 30)  # bf16 weights, ~4 copies, plus slack


def wandb_reference(aws: Any) -> str | None:
    return f"aws-secretsmanager:{aws.wandb_secret}" if aws.wandb_secret else None


def _check_limits(body: dict[str, Any]) -> None:
    """SageMaker's documented limits, checked here because botocore and moto do not."""
    import re

    problems = []
    name = body["TrainingJobName"]
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name):
        problems.append(Problem(f"job name '{name}' breaks SageMaker's pattern", field="name"))
    env = body["Environment"]
    if len(env) > 100:
        problems.append(Problem("more than 100 environment variables", field="compute.aws"))
    stop = body["StoppingCondition"]
    if stop["MaxRuntimeInSeconds"] > MAX_RUNTIME_S:
        problems.append(
            Problem("SageMaker allows at most 28 days (2419200 s)", field="compute.max_runtime")
        )
    if stop.get("MaxWaitTimeInSeconds", MAX_RUNTIME_S) < stop["MaxRuntimeInSeconds"]:
        problems.append(
            Problem(
                "must be at least compute.max_runtime (it includes the runtime)",
                field="compute.aws.spot_max_wait",
            )
        )
    vpc = body.get("VpcConfig")
    if vpc and not (1 <= len(vpc["SecurityGroupIds"]) <= 5 and 1 <= len(vpc["Subnets"]) <= 16):
        problems.append(
            Problem(
                "give 1-16 subnets and 1-5 security_groups together", field="compute.aws.subnets"
            )
        )
    for part in body["AlgorithmSpecification"]["ContainerEntrypoint"]:
        if len(part) > 256:
            problems.append(
                Problem("container entrypoint part over 256 characters", field="compute.aws")
            )
    if problems:
        raise RecipeInputError(problems)


# --- submit helpers ------------------------------------------------------------------------


def call(fn: Any, what: str) -> Any:
    """Run one AWS call; credentials and API refusals become one clear line (exit 3)."""
    import botocore.exceptions as bex

    try:
        return fn()
    except (bex.BotoCoreError, bex.ClientError) as exc:
        raise provider_error(exc, what) from None


_CREDENTIAL_CODES = (
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
)


def provider_error(exc: Exception, what: str) -> ProviderError:
    import botocore.exceptions as bex

    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return ProviderError(
            "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run `aws sso login`)"
        )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", "")
        if code in _CREDENTIAL_CODES:
            return ProviderError(f"AWS rejected the credentials ({code}): {message}")
        return ProviderError(f"{what} failed: {code}: {message}")
    if isinstance(exc, bex.EndpointConnectionError):
        return ProviderError(f"{what}: cannot reach AWS ({exc})")
    return ProviderError(f"{what} failed: {exc}")


def put_object(s3: Any, body: dict[str, Any], tags: dict[str, str]) -> bool:
    """Upload one planned object; False when an identical one is already there."""
    bucket, key = cloud.split_s3(body["uri"])
    tagging = urllib.parse.urlencode(tags)
    if "sha256" in body:
        import botocore.exceptions as bex

        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == body["sha256"]:
                return False
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise provider_error(exc, "HeadObject") from None
        data = cloud.upload_bytes(body)
        call(
            lambda: s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                Tagging=tagging,
                Metadata={"sha256": body["sha256"]},
            ),
            f"upload {body['uri']}",
        )
        return True
    content = json.dumps(body["content"], indent=2, sort_keys=True).encode()
    call(
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=content, Tagging=tagging),
        f"upload {body['uri']}",
    )
    return True


def _orphans(s3: Any, uploads: list[Request], done: list[str]) -> str:
    def delete(uri: str) -> None:
        bucket, key = cloud.split_s3(uri)
        s3.delete_object(Bucket=bucket, Key=key)

    return cloud.orphans(uploads, done, delete, "S3, tagged with this run's tags")


def _describe(sm: Any, name: str) -> dict[str, Any] | None:
    import botocore.exceptions as bex

    try:
        return sm.describe_training_job(TrainingJobName=name)
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in ("ValidationException", "ResourceNotFound") and (
            "not find" in error.get("Message", "") or "not found" in error.get("Message", "")
        ):
            return None
        raise provider_error(exc, "DescribeTrainingJob") from None
    except bex.BotoCoreError as exc:
        raise provider_error(exc, "DescribeTrainingJob") from None


def status_from_job(ref: RunRef, job: dict[str, Any]) -> RunStatus:
    primary = job.get("TrainingJobStatus", "InProgress")
    secondary = job.get("SecondaryStatus", "")
    state = _PRIMARY.get(primary, State.RUNNING)
    if primary == "InProgress" and secondary in _QUEUED_SECONDARY:
        state = State.QUEUED
    if secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
        state = State.FAILED
    transitions = job.get("SecondaryStatusTransitions") or []
    detail = job.get("FailureReason") or (
        transitions[-1].get("StatusMessage") if transitions else ""
    )
    message = f"{primary}/{secondary}" + (f": {detail}" if detail else "")
    status = RunStatus(run_id=ref.run_id, provider=ref.provider, state=state, message=message)
    status.metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList") or []}
    artifacts = {"job": job.get("TrainingJobArn", "")}
    if job.get("ModelArtifacts", {}).get("S3ModelArtifacts"):
        artifacts["model"] = job["ModelArtifacts"]["S3ModelArtifacts"]
    if job.get("CheckpointConfig", {}).get("S3Uri"):
        artifacts["checkpoints"] = job["CheckpointConfig"]["S3Uri"]
    status.artifacts = {k: v for k, v in artifacts.items() if v}
    return status


def _new_log_lines(logs: Any, job_name: str, tokens: dict[str, str | None]) -> Iterator[str]:
    """New CloudWatch events of every stream of the job (one per instance), oldest first."""
    import botocore.exceptions as bex

    try:
        streams = logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/", orderBy="LogStreamName"
        )["logStreams"]
    except bex.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return  # no instance has logged yet
        raise provider_error(exc, "DescribeLogStreams") from None
    except bex.BotoCoreError as exc:
        raise provider_error(exc, "DescribeLogStreams") from None
    for stream in streams:
        name = stream["logStreamName"]
        while True:
            kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": name}
            if tokens.get(name):
                kwargs["nextToken"] = tokens[name]
            else:
                kwargs["startFromHead"] = True
            page = call(lambda kw=kwargs: logs.get_log_events(**kw), "GetLogEvents")
            for event in page["events"]:
                prefix = f"[{name.split('/', 1)[-1]}] " if len(streams) > 1 else ""
                yield prefix + event["message"].rstrip("\n") + "\n"
            if page.get("nextForwardToken") == tokens.get(name) or not page["events"]:
                tokens[name] = page.get("nextForwardToken")
                break
            tokens[name] = page.get("nextForwardToken")
