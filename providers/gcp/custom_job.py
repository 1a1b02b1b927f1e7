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
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from providers import cloud
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
from recipes.tags import GCP as GCP_TAG_RULES

# Vertex AI's prebuilt PyTorch training containers (checked 2026-11; the newest listed
# for custom training). Bump together with training_scripts/requirements.txt.
PYTORCH_TAG = "2-4.py310"
CODE_DIR = "/tmp/code"
FUSE_ROOT = "/gcs"  # Cloud Storage FUSE mount inside every Vertex custom job
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
LOGGING_ENDPOINT = "https://logging.googleapis.com"
# For tests and emulators: an http:// endpoint here is called without credentials.
VERTEX_ENDPOINT_ENV = "RECIPE_GCP_VERTEX_ENDPOINT"
LOGGING_ENDPOINT_ENV = "RECIPE_GCP_LOGGING_ENDPOINT"
NO_CREDENTIALS = (
    "no Google Cloud credentials found (run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file)"
)
# Backoff for 429 and 5xx answers; module-level so tests can shorten it.
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
RETRY_DEADLINE_S = 120.0
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


@dataclass(frozen=True)
class GcpSettings:
    section: Any
    project: str
    region: str
    bucket: str  # gs://bucket[/prefix], no trailing slash


def gcp_settings(recipe: Recipe) -> GcpSettings:
    gcp = cloud.section(recipe, "gcp")
    project = gcp.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    bucket = gcp.staging_bucket or os.environ.get("RECIPE_GCP_BUCKET")
    problems = []
    if not project:
        problems.append(
            Problem(
                "Vertex AI needs a Google Cloud project",
                field="compute.gcp.project",
                hint="set compute.gcp.project or GOOGLE_CLOUD_PROJECT to the project id",
            )
        )
    if not bucket:
        problems.append(
            Problem(
                "Vertex AI needs a Cloud Storage location for code, data and outputs",
                field="compute.gcp.staging_bucket",
                hint="set compute.gcp.staging_bucket or RECIPE_GCP_BUCKET to gs://BUCKET[/PREFIX]",
            )
        )
    elif not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?", bucket):
        problems.append(
            Problem("expected gs://BUCKET[/PREFIX]", field="compute.gcp.staging_bucket")
        )
    if problems:
        raise RecipeInputError(problems)
    bucket = bucket.rstrip("/")  # type: ignore[union-attr]
    return GcpSettings(section=gcp, project=project, region=gcp.region, bucket=bucket)  # type: ignore[arg-type]


class GcpProvider:
    name = "gcp"
    capabilities = Capabilities(
        methods=("lora", "qlora", "full"),
        accelerators=catalog.accelerators("gcp"),
        spot=True,
        multi_node=True,
        max_processes_per_node=8,
        remote_data=("gs://",),
        idempotent=True,
    )

    def __init__(
        self,
        jobs: Any | None = None,
        storage: Any | None = None,
        session: Any | None = None,
        logging_endpoint: str | None = None,
    ):
        # Tests inject a REST JobServiceClient, a storage.Client and an HTTP session
        # pointed at fakes; otherwise they are built on first use from Application
        # Default Credentials, so plan() never needs a login.
        self._jobs = {"*": jobs} if jobs is not None else {}
        self._storage = storage
        self._session = session
        self._logging_endpoint = (
            logging_endpoint or os.environ.get(LOGGING_ENDPOINT_ENV) or LOGGING_ENDPOINT
        ).rstrip("/")
        self._credentials: Any = None

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        check_capabilities(self.name, self.capabilities, recipe)
        setting = gcp_settings(recipe)
        hardware = cloud.hardware(recipe, "gcp", setting.region, setting.section.machine_type)
        base = f"{setting.bucket}/runs/{identity.run_id}"
        tags = cloud.final_tags(recipe, identity, GCP_TAG_RULES)

        uploads = [cloud.upload_code(setting.bucket, scripts_archive())]
        data_uploads, channels = cloud.data_uploads(recipe, setting.bucket)
        uploads += data_uploads
        job_recipe = cloud.with_data_locations(recipe, channels)
        uploads.append(
            Request(
                api="storage:upload",
                body={
                    "uri": f"{base}/recipe.json",
                    "content": cloud.job_config_for(job_recipe, identity, self.name),
                    "run_scoped": True,
                },
            )
        )
        env = cloud.job_env(recipe, identity, wandb_reference=_wandb_reference(setting))
        image = pytorch_training_image(setting.region, gpu=hardware.offer.gpus > 0)
        bootstrap = _bootstrap(uploads[0].body["uri"], f"{base}/recipe.json")
        job = _custom_job(recipe, identity, setting, hardware.offer, image, bootstrap, env, base)
        job["labels"] = tags.tags
        compute = {
            **hardware.compute(recipe),
            "region": setting.region,
            "project": setting.project,
            "target": "custom-job",
            "image": image,
        }
        create = Request(
            api="vertex:CreateCustomJob",
            body={"parent": _parent(setting.project, setting.region), "customJob": job},
        )
        return Plan(
            provider=self.name,
            identity=identity,
            requests=(*uploads, create),
            compute=compute,
            tags=tags.tags,
            estimate=hardware.estimate,
            notes=(*hardware.notes, *cloud.rename_notes(tags)),
        )

    # --- submit ----------------------------------------------------------------------

    def submit(self, plan: Plan) -> RunRef:
        project, region = plan.compute["project"], plan.compute["region"]
        run_id = plan.identity.run_id
        ids = {"project": project, "region": region, "run_id": run_id}
        *uploads, create = plan.requests
        jobs = self.jobs(region)
        existing = _find_jobs(jobs, create.body["parent"], {"run_id": plan.tags["run_id"]})
        existing = [j for j in existing if j.display_name == run_id]
        if existing:
            return RunRef(self.name, run_id, {**ids, "job": existing[0].name, "existing": "true"})
        custom_job = _custom_job_message(create.body["customJob"])
        storage = self.storage(project)
        done: list[str] = []
        try:
            for upload in uploads:
                if put_object(storage, upload.body, plan.tags):
                    done.append(upload.body["uri"])
            created = call(
                lambda: jobs.create_custom_job(
                    parent=create.body["parent"],
                    custom_job=custom_job,
                    retry=_create_retry(),
                ),
                "CreateCustomJob",
            )
        except ProviderError as exc:
            raise ProviderError(f"{exc}{_orphans(storage, uploads, done)}") from None
        return RunRef(self.name, run_id, {**ids, "job": created.name})

    def latest_attempt(self, plan: Plan) -> int:
        """Highest attempt number already launched for this recipe content (0 if none)."""
        jobs = self.jobs(plan.compute["region"])
        parent = _parent(plan.compute["project"], plan.compute["region"])
        labels = {"recipe": plan.tags["recipe"], "recipe_hash": plan.tags["recipe_hash"]}
        names = [j.display_name for j in _find_jobs(jobs, parent, labels)]
        return cloud.highest_attempt(cloud.name_prefix(plan.identity), names)

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        jobs = self.jobs(ref.ids["region"])
        job = call(
            lambda: jobs.get_custom_job(name=ref.ids["job"], retry=_read_retry()),
            "GetCustomJob",
        )
        return status_from_job(ref, job)

    def logs(self, ref: RunRef, follow: bool = False) -> Iterator[str]:
        cursor = _LogCursor(ref.ids["job"].rsplit("/", 1)[-1])
        while True:
            finished = not follow or self.status(ref).state.terminal
            yield from self._new_log_lines(ref.ids["project"], cursor)
            if finished:
                return
            time.sleep(LOG_POLL_S)

    def cancel(self, ref: RunRef) -> RunStatus:
        current = self.status(ref)
        if current.state.terminal:
            return current
        jobs = self.jobs(ref.ids["region"])
        call(
            lambda: jobs.cancel_custom_job(name=ref.ids["job"], retry=_read_retry()),
            "CancelCustomJob",
        )
        return self.status(ref)

    # --- clients ---------------------------------------------------------------------

    def jobs(self, region: str) -> Any:
        if "*" in self._jobs:
            return self._jobs["*"]
        if region not in self._jobs:
            aiplatform_v1 = _sdk("google.cloud.aiplatform_v1")
            endpoint = os.environ.get(VERTEX_ENDPOINT_ENV) or f"{region}-aiplatform.googleapis.com"
            # REST, like the tests: the same transport, retries and error mapping.
            self._jobs[region] = aiplatform_v1.JobServiceClient(
                credentials=self.credentials(endpoint),
                transport="rest",
                client_options={"api_endpoint": endpoint},
            )
        return self._jobs[region]

    def storage(self, project: str) -> Any:
        if self._storage is None:
            storage = _sdk("google.cloud.storage")
            emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
            self._storage = storage.Client(project=project, credentials=self.credentials(emulator))
        return self._storage

    def session(self) -> Any:
        if self._session is None:
            transport = _sdk("google.auth.transport.requests")
            self._session = transport.AuthorizedSession(self.credentials(self._logging_endpoint))
        return self._session

    def credentials(self, endpoint: str = "") -> Any:
        if endpoint.startswith("http://"):  # a local emulator or fake
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        if self._credentials is None:
            self._credentials = default_credentials()
        return self._credentials

    # --- logs ------------------------------------------------------------------------

    def _new_log_lines(self, project: str, cursor: _LogCursor) -> Iterator[str]:
        """New Cloud Logging entries of the job (every replica), oldest first."""
        url = f"{self._logging_endpoint}/v2/entries:list"
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
            page = _post_json(self.session(), url, body, "Cloud Logging entries.list")
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


def pytorch_training_image(region: str, gpu: bool) -> str:
    """Vertex's prebuilt PyTorch training container, from the registry nearest the region."""
    if region.startswith("europe"):
        host = "europe-docker.pkg.dev"
    elif region.startswith(("asia", "australia", "me-")):
        host = "asia-docker.pkg.dev"
    else:
        host = "us-docker.pkg.dev"
    return f"{host}/vertex-ai/training/pytorch-{'gpu' if gpu else 'cpu'}.{PYTORCH_TAG}:latest"


def fuse_path(uri: str) -> str:
    return FUSE_ROOT + "/" + uri[len("gs://") :]


def _bootstrap(code_uri: str, recipe_uri: str) -> str:
    launch = f"python -m training_scripts.launch --config {fuse_path(recipe_uri)}"
    return (
        f"mkdir -p {CODE_DIR} && tar -xzf {fuse_path(code_uri)} -C {CODE_DIR} "
        f"&& cd {CODE_DIR} && exec {launch}"
    )


def _custom_job(
    recipe: Recipe,
    identity: RunIdentity,
    setting: GcpSettings,
    offer: catalog.Offer,
    image: str,
    bootstrap: str,
    env: dict[str, str],
    base: str,
) -> dict[str, Any]:
    compute = recipe.compute
    machine: dict[str, Any] = {"machineType": offer.instance_type}
    if offer.gpus:
        machine["acceleratorType"] = offer.accelerator_type
        machine["acceleratorCount"] = offer.gpus

    def pool(replicas: int) -> dict[str, Any]:
        return {
            "machineSpec": dict(machine),
            "replicaCount": str(replicas),  # int64: a string in proto JSON
            "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": _boot_disk_gb(recipe)},
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
        "baseOutputDirectory": {"outputUriPrefix": base},
    }
    if setting.section.service_account:
        spec["serviceAccount"] = setting.section.service_account
    return {"displayName": identity.run_id, "jobSpec": spec}


def _boot_disk_gb(recipe: Recipe) -> int:
    """Room for the base model (downloaded in the job), checkpoints and the output."""
    from recipes.cost.estimate import model_parameters

    params, _ = model_parameters(recipe.model.base)
    return max(100, int(params * 2 * 4 / 1e9) + 30)  # Vertex's default is 100 GB


def _wandb_reference(setting: GcpSettings) -> str | None:
    """Secret Manager's full version name, so the job needs no project lookup."""
    secret = setting.section.wandb_secret
    if not secret:
        return None
    if not secret.startswith("projects/"):
        secret = f"projects/{setting.project}/secrets/{secret}"
    if "/versions/" not in secret:
        secret += "/versions/latest"
    return f"gcp-secretmanager:{secret}"


def _parent(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def _custom_job_message(body: dict[str, Any]) -> Any:
    """The planned JSON as the SDK's message; unknown fields fail instead of vanishing."""
    aiplatform_v1 = _sdk("google.cloud.aiplatform_v1")
    return aiplatform_v1.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)


# --- calls, errors and retries ---------------------------------------------------------------


def _sdk(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ProviderError(
            "the gcp provider needs google-cloud-aiplatform and google-cloud-storage: "
            "pip install '.[gcp]'"
        ) from None


def default_credentials() -> Any:
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        raise ProviderError("the gcp provider needs google-auth: pip install '.[gcp]'") from None
    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError:
        raise ProviderError(NO_CREDENTIALS) from None
    return credentials


def _retry(*names: str) -> Any:
    from google.api_core import exceptions as gex
    from google.api_core import retry

    kinds = tuple(getattr(gex, n) for n in names)
    return retry.Retry(
        predicate=retry.if_exception_type(*kinds),
        initial=RETRY_INITIAL_S,
        maximum=RETRY_MAX_S,
        multiplier=2.0,
        timeout=RETRY_DEADLINE_S,
    )


def _read_retry() -> Any:
    """Reads (and cancel, which is idempotent) are safe to repeat on throttling and 5xx."""
    return _retry(
        "TooManyRequests",
        "ResourceExhausted",
        "InternalServerError",
        "BadGateway",
        "ServiceUnavailable",
        "GatewayTimeout",
    )


def _create_retry() -> Any:
    # Only answers that mean "not taken": a 500 after the job was created would
    # launch it twice, since Vertex has no request id for CreateCustomJob.
    return _retry("TooManyRequests", "ResourceExhausted", "ServiceUnavailable")


def call(fn: Callable[[], Any], what: str) -> Any:
    """Run one Google Cloud call; credentials and API refusals become one clear line (exit 3)."""
    import requests
    from google.api_core import exceptions as gex
    from google.auth import exceptions as aex

    try:
        return fn()
    except ProviderError:
        raise
    except gex.RetryError as exc:
        cause = exc.cause if isinstance(exc.cause, gex.GoogleAPICallError) else None
        if cause is not None:
            raise provider_error(cause, what) from None
        raise ProviderError(f"{what} failed: gave up retrying ({exc})") from None
    except gex.GoogleAPICallError as exc:
        raise provider_error(exc, what) from None
    except aex.DefaultCredentialsError:
        raise ProviderError(NO_CREDENTIALS) from None
    except aex.RefreshError as exc:
        raise ProviderError(
            f"Google Cloud rejected the credentials ({_first_line(exc)}); run "
            "`gcloud auth application-default login`"
        ) from None
    except (aex.TransportError, requests.RequestException, ConnectionError) as exc:
        raise ProviderError(f"{what}: cannot reach Google Cloud ({_first_line(exc)})") from None


def provider_error(exc: Any, what: str) -> ProviderError:
    code = exc.code or "?"  # the HTTP status, on every api_core error class
    status, message = _error_details(exc)
    line = f"{what} failed: {code} {status}: {message}"
    if code == 401:
        line += " (run `gcloud auth application-default login`)"
    elif code == 403:
        line += " (check the project, the Vertex AI API and the caller's roles)"
    return ProviderError(line)


def _error_details(exc: Any) -> tuple[str, str]:
    """The API's own status name and message, without the request URL the SDK prepends."""
    status, message = "", re.sub(r"^[A-Z]+ \S+: ", "", str(exc.message or ""))
    response = getattr(exc, "response", None)
    try:
        error = response.json()["error"]  # type: ignore[union-attr]
        status, message = error.get("status", ""), error.get("message", message)
    except Exception:  # not a JSON error body: keep what the SDK parsed
        pass
    status = status or re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()
    return status, _first_line(message) or "(no message)"


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else ""


def _post_json(session: Any, url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
    """POST through an authorized session, with the SDK's error classes and backoff."""
    from google.api_core import exceptions as gex

    def once() -> dict[str, Any]:
        response = session.post(url, json=body, timeout=60)
        if response.status_code >= 400:
            raise gex.from_http_response(response)
        return response.json()

    return call(lambda: _read_retry()(once)(), what)


# --- submit helpers --------------------------------------------------------------------------


def split_gs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://") :].partition("/")
    return bucket, name


def put_object(storage: Any, body: dict[str, Any], tags: dict[str, str]) -> bool:
    """Upload one planned object; False when an identical one is already there.

    Cloud Storage objects have no labels: the run's tags go in as object metadata.
    """
    from google.cloud.storage.retry import DEFAULT_RETRY

    uri = body["uri"]
    bucket_name, name = split_gs(uri)
    bucket = storage.bucket(bucket_name)
    metadata = dict(tags)
    if "sha256" in body:
        current = call(lambda: bucket.get_blob(name, retry=DEFAULT_RETRY), f"read {uri}")
        if current is not None and (current.metadata or {}).get("sha256") == body["sha256"]:
            return False
        try:
            data = cloud.upload_bytes(body)
        except OSError as exc:
            raise ProviderError(f"cannot read {body['source']}: {exc.strerror}") from None
        metadata["sha256"] = body["sha256"]
        content_type = "application/gzip" if name.endswith(ARCHIVE_NAME) else "application/jsonl"
    else:
        data = json.dumps(body["content"], indent=2, sort_keys=True).encode()
        content_type = "application/json"
    blob = bucket.blob(name)
    blob.metadata = metadata
    # The same bytes under the same name: repeating an upload is safe, so retry it.
    call(
        lambda: blob.upload_from_string(data, content_type=content_type, retry=DEFAULT_RETRY),
        f"upload {uri}",
    )
    return True


def _orphans(storage: Any, uploads: list[Request], done: list[str]) -> str:
    def delete(uri: str) -> None:
        bucket, name = split_gs(uri)
        storage.bucket(bucket).blob(name).delete()

    return cloud.orphans(
        uploads, done, delete, "Cloud Storage, this run's tags in the object metadata"
    )


def _find_jobs(jobs: Any, parent: str, labels: dict[str, str]) -> list[Any]:
    query = " AND ".join(f'labels.{k}="{v}"' for k, v in labels.items())
    pages = call(
        lambda: jobs.list_custom_jobs(
            request={"parent": parent, "filter": query}, retry=_read_retry()
        ),
        "ListCustomJobs",
    )
    return call(lambda: list(pages), "ListCustomJobs")


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
