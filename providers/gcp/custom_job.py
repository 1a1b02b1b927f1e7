"""Vertex AI custom jobs: the recipe becomes one CreateCustomJob request.

plan() is pure: it resolves the machine type and accelerator from the hardware
catalog and writes down every request submit() will make: Cloud Storage uploads
(code, local data, recipe.json) and the CustomJob body in the REST API's JSON
form (camelCase, int64 as strings, durations as "<n>s", enums by name; the SDK's
REST transport sends the enums as their numbers). submit() sends exactly those,
skipping uploads already present with the same hash. Custom jobs carry the run id
as a label, so a second `run` of the same recipe finds the first job instead of
launching again.

The job reads everything through Cloud Storage FUSE (/gcs/BUCKET/...): the code
archive, recipe.json and gs:// data; Vertex sets AIP_MODEL_DIR and
AIP_CHECKPOINT_DIR under baseOutputDirectory, which training_scripts.platforms maps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from providers import images, staging
from providers.base import (
    Plan,
    Request,
    RunIdentity,
    RunRef,
    RunStatus,
    State,
)
from providers.contract import launch_command
from providers.gcp import sdk
from providers.gcp.settings import CAPABILITIES, GcpSettings, resolve
from providers.gcp.storage import GcsStorage
from recipes.schema import Recipe

# Boot disks: Vertex's default is pd-ssd, except machine series that only take Hyperdisk
# (A3 Ultra and A4), whose default and only choice is hyperdisk-balanced
# (aiplatform_v1 DiskSpec.boot_disk_type; "Configure compute resources for custom training").
HYPERDISK_ONLY = ("a3-ultragpu-", "a4-highgpu-")
CODE_DIR = "/tmp/code"
FUSE_ROOT = "/gcs"  # Cloud Storage FUSE mount inside every Vertex custom job
LOGGING_ENDPOINT = "https://logging.googleapis.com"
LOGGING_ENDPOINT_ENV = "RECIPE_GCP_LOGGING_ENDPOINT"
LOG_POLL_S = 10.0

_STATES = {
    "JOB_STATE_QUEUED": State.QUEUED,
    "JOB_STATE_PENDING": State.QUEUED,
    "JOB_STATE_PAUSED": State.QUEUED,
    "JOB_STATE_RUNNING": State.RUNNING,
    "JOB_STATE_CANCELLING": State.RUNNING,
    "JOB_STATE_UPDATING": State.RUNNING,
    "JOB_STATE_SUCCEEDED": State.SUCCEEDED,
    "JOB_STATE_FAILED": State.FAILED,
    "JOB_STATE_EXPIRED": State.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": State.FAILED,  # batch jobs only; never a success here
    "JOB_STATE_CANCELLED": State.CANCELLED,
}


@staging.cloud_job
class CustomJobs:
    """Vertex AI custom jobs."""

    name = "gcp"
    target = "custom-job"
    capabilities = CAPABILITIES

    def __init__(
        self,
        jobs: Any | None = None,
        storage: Any | None = None,
        session: Any | None = None,
        logging_endpoint: str | None = None,
    ):
        # Tests inject a REST JobServiceClient, a storage.Client and an HTTP session
        # pointed at fakes; otherwise they are built on first use.
        self.clients = sdk.Clients(jobs, storage, session)
        self._logging_endpoint = (
            logging_endpoint or os.environ.get(LOGGING_ENDPOINT_ENV) or LOGGING_ENDPOINT
        ).rstrip("/")

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        setting = resolve(recipe)
        staged = staging.stage(recipe, identity, setting.site(self.target), self.capabilities)
        gpu = staged.hardware.offer.gpus > 0
        field = "compute.gcp.image"
        image, notes = images.choose("gcp", self.target, gpu, setting.section.image, field)
        job = _custom_job(staged, setting, image)
        create = Request(
            api="vertex:CreateCustomJob",
            body={"parent": _parent(setting.project, setting.region), "customJob": job},
        )
        compute = {"project": setting.project, "target": self.target, "image": image}
        return staged.plan(create, compute, notes)

    log_poll_s = LOG_POLL_S  # how often `logs --follow` polls

    # --- JobApi: the Vertex AI calls the pipeline makes -------------------------------

    def storage(self, plan: Plan) -> GcsStorage:
        return GcsStorage(self.clients.storage(plan.compute["project"]))

    def find(self, plan: Plan) -> RunRef | None:
        jobs = self.clients.jobs(plan.compute["region"])
        run_id = plan.identity.run_id
        found = _find_jobs(jobs, plan.requests[-1].body["parent"], {"run_id": plan.tags["run_id"]})
        found = [j for j in found if j.display_name == run_id]
        return self._ref(plan, found[0].name) if found else None

    def create(self, plan: Plan, request: Request) -> RunRef:
        jobs = self.clients.jobs(plan.compute["region"])
        message = sdk.custom_job_message(request.body["customJob"])
        created = sdk.call(
            lambda: jobs.create_custom_job(
                parent=request.body["parent"], custom_job=message, retry=sdk.create_retry()
            ),
            "CreateCustomJob",
        )
        return self._ref(plan, created.name)

    def launched(self, plan: Plan) -> Iterable[str]:
        jobs = self.clients.jobs(plan.compute["region"])
        parent = _parent(plan.compute["project"], plan.compute["region"])
        labels = {"recipe": plan.tags["recipe"], "recipe_hash": plan.tags["recipe_hash"]}
        return [j.display_name for j in _find_jobs(jobs, parent, labels)]

    def _ref(self, plan: Plan, job: str) -> RunRef:
        project, region = plan.compute["project"], plan.compute["region"]
        run_id = plan.identity.run_id
        return RunRef(
            self.name, run_id, {"project": project, "region": region, "run_id": run_id, "job": job}
        )

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        jobs = self.clients.jobs(ref.ids["region"])
        job = sdk.call(
            lambda: jobs.get_custom_job(name=ref.ids["job"], retry=sdk.read_retry()),
            "GetCustomJob",
        )
        return status_from_job(ref, job)

    def stop(self, ref: RunRef) -> None:
        jobs = self.clients.jobs(ref.ids["region"])
        sdk.call(
            lambda: jobs.cancel_custom_job(name=ref.ids["job"], retry=sdk.read_retry()),
            "CancelCustomJob",
        )

    # --- logs ------------------------------------------------------------------------

    def new_log_lines(self, ref: RunRef, state: dict[str, Any]) -> Iterator[str]:
        """New Cloud Logging entries of the job (every replica), oldest first."""
        project = ref.ids["project"]
        cursor = state.setdefault("cursor", _LogCursor(ref.ids["job"].rsplit("/", 1)[-1]))
        url = f"{self._logging_endpoint}/v2/entries:list"
        session = self.clients.session(self._logging_endpoint)
        query = cursor.filter()
        token = None
        entries = []
        while True:
            body = {
                "resourceNames": [f"projects/{project}"],
                "filter": query,
                "orderBy": "timestamp asc",
                "pageSize": 1000,
            }
            if token:
                body["pageToken"] = token
            page = sdk.post_json(session, url, body, "Cloud Logging entries.list")
            entries += page.get("entries", [])
            token = page.get("nextPageToken")
            if not token:
                break
        cursor.tasks |= {_task(e) for e in entries} - {""}
        for entry in cursor.fresh(entries):
            text = _entry_text(entry)
            if text is None:
                continue
            # One replica's lines need no label; several replicas interleave.
            prefix = f"[{_task(entry)}] " if len(cursor.tasks) > 1 else ""
            yield prefix + text.rstrip("\n") + "\n"


# --- the CustomJob body --------------------------------------------------------------------


def fuse_path(uri: str) -> str:
    return FUSE_ROOT + "/" + uri[len("gs://") :]


def _bootstrap(code_uri: str, recipe_uri: str) -> str:
    launch = launch_command(fuse_path(recipe_uri))
    return (
        f"mkdir -p {CODE_DIR} && tar -xzf {fuse_path(code_uri)} -C {CODE_DIR} "
        f"&& cd {CODE_DIR} && exec {launch}"
    )


def _custom_job(staged: staging.Staged, setting: GcpSettings, image: str) -> dict[str, Any]:
    recipe, offer, env = staged.recipe, staged.hardware.offer, staged.env
    bootstrap = _bootstrap(staged.inputs["code"], staged.inputs["recipe"])
    compute = recipe.compute
    machine: dict[str, Any] = {"machineType": offer.instance_type}
    hyperdisk = offer.instance_type.startswith(HYPERDISK_ONLY)
    disk_type = "hyperdisk-balanced" if hyperdisk else "pd-ssd"
    if offer.gpus:
        machine["acceleratorType"] = offer.accelerator_type
        machine["acceleratorCount"] = offer.gpus

    def pool(replicas: int) -> dict[str, Any]:
        return {
            "machineSpec": dict(machine),
            "replicaCount": str(replicas),  # int64: a string in proto JSON
            # Vertex's default boot disk is 100 GB.
            "diskSpec": {"bootDiskType": disk_type, "bootDiskSizeGb": staging.disk_gb(recipe, 100)},
            "containerSpec": {
                "imageUri": image,
                "command": ["bash", "-c", bootstrap],
                "env": [{"name": k, "value": v} for k, v in env.items()],
            },
        }

    pools = [pool(1)] + ([pool(compute.nodes - 1)] if compute.nodes > 1 else [])
    spec: dict[str, Any] = {
        "workerPoolSpecs": pools,
        "scheduling": {
            "timeout": f"{compute.max_runtime}s",
            # A restarted replica cannot rejoin a running torchrun rendezvous: restart all.
            "restartJobOnWorkerRestart": True,
            "strategy": "SPOT" if compute.spot else "STANDARD",
        },
        "baseOutputDirectory": {"outputUriPrefix": staged.run_base},
    }
    if setting.section.service_account:
        spec["serviceAccount"] = setting.section.service_account
    return {"displayName": staged.identity.run_id, "jobSpec": spec, "labels": staged.tags.tags}


def _parent(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def _find_jobs(jobs: Any, parent: str, labels: dict[str, str]) -> list[Any]:
    query = " AND ".join(f'labels.{k}="{v}"' for k, v in labels.items())
    pages = sdk.call(
        lambda: jobs.list_custom_jobs(
            request={"parent": parent, "filter": query}, retry=sdk.read_retry()
        ),
        "ListCustomJobs",
    )
    return sdk.call(lambda: list(pages), "ListCustomJobs")


def status_from_job(ref: RunRef, job: Any) -> RunStatus:
    name = job.state.name
    state = _STATES.get(name, State.RUNNING)
    detail = job.error.message if job.error and job.error.message else ""
    message = name.removeprefix("JOB_STATE_") + (f": {detail}" if detail else "")
    status = RunStatus(run_id=ref.run_id, provider=ref.provider, state=state, message=message)
    artifacts = {"job": job.name}
    output = job.job_spec.base_output_directory.output_uri_prefix
    if output:
        artifacts["model"] = f"{output}/model"  # AIP_MODEL_DIR
        artifacts["checkpoints"] = f"{output}/checkpoints"  # AIP_CHECKPOINT_DIR
    job_id = job.name.rsplit("/", 1)[-1]
    if ref.ids.get("region") and ref.ids.get("project"):
        artifacts["console"] = (
            "https://console.cloud.google.com/vertex-ai/locations/"
            f"{ref.ids['region']}/training/{job_id}/cpu?project={ref.ids['project']}"
        )
    status.artifacts = {k: v for k, v in artifacts.items() if v}
    return status


class _LogCursor:
    """Where the last read stopped: Cloud Logging has no forward token, so we ask again
    from the newest timestamp seen and drop the entries already printed there."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.after: str | None = None
        self.seen_at_after: set[str] = set()
        self.tasks: set[str] = set()

    def filter(self) -> str:
        query = f'resource.type="ml_job" AND resource.labels.job_id="{self.job_id}"'
        if self.after:
            query += f' AND timestamp>="{self.after}"'
        return query

    def fresh(self, entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for entry in entries:
            stamp, key = entry.get("timestamp", ""), entry.get("insertId", "")
            if stamp == self.after and key in self.seen_at_after:
                continue
            if stamp != self.after:
                self.after, self.seen_at_after = stamp, set()
            self.seen_at_after.add(key)
            yield entry


def _task(entry: dict[str, Any]) -> str:
    return entry.get("resource", {}).get("labels", {}).get("task_name", "")


def _entry_text(entry: dict[str, Any]) -> str | None:
    if "textPayload" in entry:
        return entry["textPayload"]
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict):
        return payload.get("message") or json.dumps(payload, sort_keys=True)
    return None
