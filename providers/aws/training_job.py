"""Amazon SageMaker training jobs: the recipe becomes one CreateTrainingJob request.

plan() is pure: it resolves the instance type from the hardware catalog, builds
the scripts archive (content-addressed), and writes down every request submit()
will make: S3 uploads (code, local data, recipe.json) and the CreateTrainingJob
body. submit() sends exactly those, skipping uploads already present with the
same hash. Job names are deterministic (recipe, content hash, attempt), so a
second `run` of the same recipe finds the first job instead of launching again.

HyperPod (compute.aws.target: hyperpod) is providers.aws.hyperpod.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from providers import images, staging
from providers.aws import sdk
from providers.aws.images import training_image
from providers.aws.settings import CAPABILITIES, AwsSettings, resolve
from providers.aws.storage import S3Storage
from providers.base import (
    ErrorKind,
    Plan,
    ProviderError,
    Request,
    RunIdentity,
    RunRef,
    RunStatus,
    State,
)
from providers.contract import launch_command
from providers.packaging import ARCHIVE_NAME
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_POLL_S = 5.0
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


@staging.cloud_job
class TrainingJobs:
    """SageMaker training jobs (compute.aws.target: training-job, the default)."""

    name = "aws"
    target = "training-job"
    capabilities = CAPABILITIES

    def __init__(self, clients: dict[str, Any] | None = None):
        # Tests inject moto-backed clients; otherwise built per region from the usual AWS
        # credential chain, with SageMaker's retry mode for throttling and 5xx.
        self.clients = sdk.Clients(clients)

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        setting = resolve(recipe)
        staged = staging.stage(recipe, identity, setting.site(self.target), self.capabilities)
        gpu = recipe.compute.accelerator != "cpu"
        image, notes = training_image(setting.region, self.target, gpu, setting.section.image)
        body = _training_job_body(staged, setting, image)
        _check_limits(body)
        create = Request(api="sagemaker:CreateTrainingJob", body=body)
        return staged.plan(create, {"target": self.target, "image": image}, notes)

    log_poll_s = LOG_POLL_S  # how often `logs --follow` polls

    # --- JobApi: the SageMaker calls the shared pipeline makes ------------------------

    def storage(self, plan: Plan) -> S3Storage:
        return S3Storage.for_plan(self.clients, plan)

    def find(self, plan: Plan) -> RunRef | None:
        ref = self._ref(plan)
        return ref if self._describe(ref) is not None else None

    def create(self, plan: Plan, request: Request) -> RunRef:
        sm = self.clients.get("sagemaker", plan.compute["region"])
        answer = sdk.call(lambda: sm.create_training_job(**request.body), "CreateTrainingJob")
        ref = self._ref(plan)
        return RunRef(ref.provider, ref.run_id, {**ref.ids, "arn": answer["TrainingJobArn"]})

    def launched(self, plan: Plan) -> Iterable[str]:
        sm = self.clients.get("sagemaker", plan.compute["region"])
        pages = sdk.call(lambda: sm.get_paginator("list_training_jobs"), "ListTrainingJobs")
        prefix = staging.name_prefix(plan.identity)
        for page in sdk.call(lambda: list(pages.paginate(NameContains=prefix)), "ListTrainingJobs"):
            yield from (j["TrainingJobName"] for j in page["TrainingJobSummaries"])

    def _ref(self, plan: Plan) -> RunRef:
        name = plan.identity.run_id
        return RunRef(self.name, name, {"region": plan.compute["region"], "job_name": name})

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        job = self._describe(ref)
        if job is None:
            raise ProviderError(
                f"training job {ref.ids['job_name']} not found in {ref.ids['region']}",
                ErrorKind.NOT_FOUND,
            )
        return status_from_job(ref, job)

    def new_log_lines(self, ref: RunRef, cursor: dict[str, Any]) -> Iterator[str]:
        logs = self.clients.get("logs", ref.ids["region"])
        return _new_log_lines(logs, ref.ids["job_name"], cursor)

    def stop(self, ref: RunRef) -> None:
        sm = self.clients.get("sagemaker", ref.ids["region"])
        name = ref.ids["job_name"]
        sdk.call(lambda: sm.stop_training_job(TrainingJobName=name), "StopTrainingJob")

    def _describe(self, ref: RunRef) -> dict[str, Any] | None:
        sm = self.clients.get("sagemaker", ref.ids["region"])
        name = ref.ids["job_name"]
        return staging.unless_missing(
            lambda: sdk.call(
                lambda: sm.describe_training_job(TrainingJobName=name), "DescribeTrainingJob"
            )
        )


# --- the CreateTrainingJob body -----------------------------------------------------------


def _training_job_body(staged: staging.Staged, setting: AwsSettings, image: str) -> dict[str, Any]:
    recipe, aws, base = staged.recipe, setting.section, staged.run_base
    compute = recipe.compute
    instance_type = staged.hardware.offer.instance_type
    options = ["--no-install"] if aws.network_isolation or aws.image else []
    launch = launch_command(RECIPE_PATH, *options)  # an isolated container cannot pip install
    bootstrap = (
        f"mkdir -p {CODE_DIR} && tar -xzf /opt/ml/input/data/code/{ARCHIVE_NAME} -C {CODE_DIR} "
        f"&& cd {CODE_DIR} && exec {launch}"
    )
    body: dict[str, Any] = {
        "TrainingJobName": staged.identity.run_id,
        "RoleArn": setting.role,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["bash", "-c", bootstrap],
        },
        "InputDataConfig": [_channel(n, uri) for n, uri in staged.inputs.items()],
        "OutputDataConfig": {"S3OutputPath": f"{base}/output"},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": compute.nodes,
            "VolumeSizeInGB": staging.disk_gb(recipe, minimum=50),
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": compute.max_runtime},
        "CheckpointConfig": {"S3Uri": f"{base}/checkpoints", "LocalPath": "/opt/ml/checkpoints"},
        "EnableNetworkIsolation": aws.network_isolation,
        "EnableManagedSpotTraining": compute.spot,
        "Environment": staged.env,
        "Tags": [{"Key": k, "Value": v} for k, v in staged.tags.tags.items()],
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


# VolumeKmsKeyId takes a key ID or key ARN only, OutputDataConfig.KmsKeyId an alias too
# (botocore's sagemaker model, the two members' documentation).
_KMS_KEY = re.compile(
    r"(mrk-[0-9a-f]{32}|[0-9a-f-]{36}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/.+)"
)


def _check_limits(body: dict[str, Any]) -> None:
    """SageMaker's documented limits, checked here because botocore and moto do not."""
    problems = []
    volume_key = body["ResourceConfig"].get("VolumeKmsKeyId")
    if volume_key and not _KMS_KEY.fullmatch(volume_key):
        problems.append(
            Problem(
                f"'{volume_key}' cannot encrypt the training volume: VolumeKmsKeyId takes a "
                "key ID or key ARN, not an alias",
                field="compute.aws.kms_key",
                hint="give the key's ID or ARN (an alias works for the output only)",
            )
        )
    image = body["AlgorithmSpecification"]["TrainingImage"]
    if body["EnableNetworkIsolation"] and images.is_catalog_image(image):
        problems.append(
            Problem(
                "an isolated container cannot install the training requirements nor download "
                "a hub model",
                field="compute.aws.network_isolation",
                hint="set compute.aws.image to an image with training_scripts/requirements.txt "
                "installed and a local or s3:// base model",
            )
        )
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
    for part in body["AlgorithmSpecification"]["ContainerEntrypoint"]:
        if len(part) > 256:
            problems.append(
                Problem("container entrypoint part over 256 characters", field="compute.aws")
            )
    if problems:
        raise RecipeInputError(problems)


# --- reading jobs back ---------------------------------------------------------------------


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
    found = staging.unless_missing(
        lambda: sdk.call(
            lambda: logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/", orderBy="LogStreamName"
            ),
            "DescribeLogStreams",
        )
    )
    streams = found["logStreams"] if found else []  # no instance has logged yet
    for stream in streams:
        name = stream["logStreamName"]
        while True:
            kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": name}
            if tokens.get(name):
                kwargs["nextToken"] = tokens[name]
            else:
                kwargs["startFromHead"] = True
            page = sdk.call(lambda kw=kwargs: logs.get_log_events(**kw), "GetLogEvents")
            for event in page["events"]:
                prefix = f"[{name.split('/', 1)[-1]}] " if len(streams) > 1 else ""
                yield prefix + event["message"].rstrip("\n") + "\n"
            if page.get("nextForwardToken") == tokens.get(name) or not page["events"]:
                tokens[name] = page.get("nextForwardToken")
                break
            tokens[name] = page.get("nextForwardToken")
