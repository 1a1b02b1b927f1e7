"""Azure ML command jobs: the recipe becomes one `command()` job, built with azure-ai-ml.

plan() builds the job entity with the SDK and records the exact REST body the SDK
will PUT (its own serializer, the compute resolved to its ARM id, and the git
provenance the SDK adds), plus the blob uploads of the scripts archive, local data
and recipe.json to the workspace's datastore. submit() uploads (skipping blobs
already there with the same hash) and calls `ml_client.jobs.create_or_update`.
The job name is deterministic, so a second run finds the first job.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
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
from providers.packaging import scripts_archive
from recipes.cost import catalog
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import AZURE as AZURE_TAG_RULES

API_VERSION = "2025-01-01-preview"  # what azure-ai-ml uses for command jobs
DEFAULT_ENVIRONMENT = (
    "azureml://registries/azureml/environments/acpt-pytorch-2.2-cuda12.1/versions/42"
)
CPU_ENVIRONMENT = "azureml://registries/azureml/environments/sklearn-1.5/versions/20"
_STATES = {
    "NotStarted": State.QUEUED,
    "Queued": State.QUEUED,
    "Preparing": State.QUEUED,
    "Provisioning": State.QUEUED,
    "Starting": State.QUEUED,
    "Running": State.RUNNING,
    "Finalizing": State.RUNNING,
    "CancelRequested": State.RUNNING,
    "NotResponding": State.RUNNING,
    "Paused": State.QUEUED,
    "Completed": State.SUCCEEDED,
    "Failed": State.FAILED,
    "Canceled": State.CANCELLED,
}


@dataclass(frozen=True)
class Workspace:
    subscription: str
    resource_group: str
    workspace: str
    region: str
    datastore: str
    cluster: str

    @property
    def arm(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    def uri(self, path: str) -> str:
        return f"azureml://datastores/{self.datastore}/paths/{path}"


def workspace(recipe: Recipe) -> Workspace:
    azure = cloud.section(recipe, "azure")
    values = {
        "subscription": azure.subscription or os.environ.get("AZURE_SUBSCRIPTION_ID"),
        "resource_group": azure.resource_group or os.environ.get("AZURE_RESOURCE_GROUP"),
        "workspace": azure.workspace or os.environ.get("AZUREML_WORKSPACE_NAME"),
    }
    env_names = {
        "subscription": "AZURE_SUBSCRIPTION_ID",
        "resource_group": "AZURE_RESOURCE_GROUP",
        "workspace": "AZUREML_WORKSPACE_NAME",
    }
    problems = [
        Problem(
            "Azure ML needs the workspace",
            field=f"compute.azure.{key}",
            hint=f"set compute.azure.{key} or {env_names[key]}",
        )
        for key, value in values.items()
        if not value
    ]
    if not (azure.compute or os.environ.get("AZUREML_COMPUTE")):
        problems.append(
            Problem(
                "Azure ML needs a compute cluster name",
                field="compute.azure.compute",
                hint="set compute.azure.compute or AZUREML_COMPUTE to the AmlCompute cluster",
            )
        )
    if problems:
        raise RecipeInputError(problems)
    return Workspace(
        **values,  # type: ignore[arg-type]
        region=azure.region,
        datastore=azure.datastore,
        cluster=azure.compute or os.environ["AZUREML_COMPUTE"],
    )


class AzureProvider:
    name = "azure"
    capabilities = Capabilities(
        methods=("lora", "qlora", "full"),
        accelerators=catalog.accelerators("azure"),
        spot=True,  # low-priority AmlCompute; the cluster's tier decides, see plan notes
        multi_node=True,
        max_processes_per_node=8,
        remote_data=("azureml://",),
        idempotent=True,
    )

    def __init__(self, ml_client: Any = None):
        self._ml_client = ml_client  # tests inject an MLClient pointed at an HTTP fake
        self._containers: dict[str, Any] = {}  # datastore -> ContainerClient

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        check_capabilities(self.name, self.capabilities, recipe)
        azure = cloud.section(recipe, "azure")
        ws = workspace(recipe)
        hardware = cloud.hardware(recipe, "azure", ws.region, azure.instance_type)
        name = identity.run_id
        tags = cloud.final_tags(recipe, identity, AZURE_TAG_RULES)
        base = ws.uri("recipe")
        archive = scripts_archive()
        uploads = [cloud.upload_code(base, archive)]
        data_uploads, channels = cloud.data_uploads(recipe, base)
        uploads += data_uploads
        recipe_uri = f"{base}/runs/{name}/recipe.json"
        job_recipe = cloud.with_data_locations(recipe, channels)
        uploads.append(
            Request(
                api="storage:upload",
                body={
                    "uri": recipe_uri,
                    "content": cloud.job_config_for(job_recipe, identity, self.name),
                    "run_scoped": True,
                },
            )
        )
        env = cloud.job_env(recipe, identity, _wandb_reference(azure))
        inputs = {"code": uploads[0].body["uri"], "recipe": recipe_uri, **channels}
        job = build_job(recipe, name, ws, azure, hardware.offer, inputs, env, tags.tags)
        body = rest_body(job, ws)
        notes = [*hardware.notes, *cloud.rename_notes(tags)]
        if recipe.compute.spot:
            notes.append(
                f"spot: runs at low priority; the cluster '{ws.cluster}' must be a "
                "low-priority AmlCompute cluster"
            )
        return Plan(
            provider=self.name,
            identity=identity,
            requests=(
                *uploads,
                Request(
                    api="azureml:CreateOrUpdateJob",
                    body={
                        "url": f"{ws.arm}/jobs/{name}?api-version={API_VERSION}",
                        "job": body,
                    },
                ),
            ),
            compute={
                **hardware.compute(recipe),
                "region": ws.region,
                "subscription": ws.subscription,
                "resource_group": ws.resource_group,
                "workspace": ws.workspace,
                "cluster": ws.cluster,
                "environment": body["properties"]["environmentId"],
            },
            tags=tags.tags,
            estimate=hardware.estimate,
            notes=tuple(notes),
        )

    # --- submit ----------------------------------------------------------------------

    def submit(self, plan: Plan) -> RunRef:
        *uploads, create = plan.requests
        name = plan.identity.run_id
        # The workspace travels with the run, so status/logs/cancel find it from any shell.
        scope = {k: plan.compute[k] for k in ("subscription", "resource_group", "workspace")}
        ref = RunRef(provider=self.name, run_id=name, ids={"job_name": name, **scope})
        ml = self.client(scope)
        if _get_job(ml, name) is not None:
            return RunRef(ref.provider, ref.run_id, {**ref.ids, "existing": "true"})
        done: list[str] = []
        try:
            for upload in uploads:
                if self._upload(ml, upload.body, plan.tags):
                    done.append(upload.body["uri"])
            job = job_from_rest(create.body["job"], name)
            _call(lambda: ml.jobs.create_or_update(job), "create the Azure ML job")
        except ProviderError as exc:
            raise ProviderError(f"{exc}{self._orphans(ml, uploads, done)}") from None
        return RunRef(ref.provider, ref.run_id, ref.ids)

    def latest_attempt(self, plan: Plan) -> int:
        ml = self.client(
            {k: plan.compute[k] for k in ("subscription", "resource_group", "workspace")}
        )
        prefix = cloud.name_prefix(plan.identity)
        jobs = _call(lambda: list(ml.jobs.list()), "list Azure ML jobs")
        return cloud.highest_attempt(prefix, [j.name for j in jobs])

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        ml = self.client(ref.ids)
        job = _get_job(ml, ref.ids["job_name"])
        if job is None:
            raise ProviderError(f"Azure ML job {ref.ids['job_name']} not found")
        state = _STATES.get(job.status or "", State.RUNNING)
        status = RunStatus(
            run_id=ref.run_id, provider=self.name, state=state, message=job.status or ""
        )
        if job.studio_url:
            status.artifacts["studio"] = job.studio_url
        return status

    def logs(self, ref: RunRef, follow: bool = False) -> Iterator[str]:
        """The job's std_log.txt from the workspace artifact store (what the studio shows)."""
        ml = self.client(ref.ids)
        position = 0
        while True:
            finished = not follow or self.status(ref).state.terminal
            text = self._read_log(ml, ref.ids["job_name"])
            yield from text[position:].splitlines(keepends=True)
            position = len(text)
            if finished:
                return
            time.sleep(5)

    def cancel(self, ref: RunRef) -> RunStatus:
        current = self.status(ref)
        if current.state.terminal:
            return current
        ml = self.client(ref.ids)
        _call(lambda: ml.jobs.begin_cancel(ref.ids["job_name"]).result(), "cancel the Azure ML job")
        return self.status(ref)

    # --- clients and storage ---------------------------------------------------------

    def client(self, scope: dict[str, str]) -> Any:
        """The MLClient of the run's workspace (subscription, resource_group, workspace)."""
        if self._ml_client is None:
            self._ml_client = _default_client(scope)
        return self._ml_client

    def _container(self, ml: Any, datastore: str) -> Any:
        if datastore not in self._containers:
            self._containers[datastore] = _container_client(ml, datastore)
        return self._containers[datastore]

    def _upload(self, ml: Any, body: dict[str, Any], tags: dict[str, str]) -> bool:
        datastore, path = split_uri(body["uri"])
        blob = self._container(ml, datastore).get_blob_client(path)
        metadata = {re.sub(r"\W", "_", k): v for k, v in tags.items()}  # names: identifiers
        if "sha256" in body:
            props = _maybe(lambda: blob.get_blob_properties())
            if props is not None and props.metadata.get("sha256") == body["sha256"]:
                return False
            data = cloud.upload_bytes(body)
            metadata["sha256"] = body["sha256"]
        else:
            data = json.dumps(body["content"], indent=2, sort_keys=True).encode()
        _call(
            lambda: blob.upload_blob(data, overwrite=True, metadata=metadata),
            f"upload {body['uri']}",
        )
        return True

    def _orphans(self, ml: Any, uploads: list[Request], done: list[str]) -> str:
        def delete(uri: str) -> None:
            datastore, path = split_uri(uri)
            self._container(ml, datastore).delete_blob(path)

        return cloud.orphans(uploads, done, delete, "the datastore, tagged with this run's tags")

    def _read_log(self, ml: Any, name: str) -> str:
        container = self._container(ml, "workspaceartifactstore")
        blob = container.get_blob_client(f"ExperimentRun/dcid.{name}/user_logs/std_log.txt")
        data = _maybe(lambda: blob.download_blob().readall())
        return data.decode("utf-8", errors="replace") if data else ""


def _container_client(ml: Any, datastore: str) -> Any:
    """The datastore's blob container, resolved by azure-ai-ml (datastore GET, listSecrets)."""
    from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info
    from azure.storage.blob import ContainerClient

    override = os.environ.get("RECIPE_AZURE_BLOB_ENDPOINT")
    info = _call(
        lambda: get_datastore_info(
            ml.datastores, datastore, **({"account_url": override} if override else {})
        ),
        f"resolve datastore {datastore}",
    )
    return ContainerClient(
        account_url=info["account_url"],
        container_name=info["container_name"],
        credential=info["credential"],
    )


def split_uri(uri: str) -> tuple[str, str]:
    """azureml://datastores/D/paths/P -> (D, P)."""
    rest = uri[len("azureml://datastores/") :]
    datastore, _, path = rest.partition("/paths/")
    return datastore, path


def _wandb_reference(azure: Any) -> str | None:
    return f"azure-keyvault:{azure.wandb_secret}" if azure.wandb_secret else None


# --- the job ------------------------------------------------------------------------------


def _sdk() -> Any:
    # azure-ai-ml logs "experimental class" notices and HTTP details at WARNING; the CLI
    # reports what matters itself.
    logging.getLogger("azure").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # azure-ai-ml's import-time marshmallow noise
            warnings.simplefilter("ignore")
            import azure.ai.ml as sdk
    except ImportError:
        raise RecipeInputError(
            Problem(
                "the azure provider needs azure-ai-ml: pip install '.[azure]'", field="--provider"
            )
        ) from None
    return sdk


def build_job(
    recipe: Recipe,
    name: str,
    ws: Workspace,
    azure: Any,
    offer: Any,
    inputs: dict[str, str],
    env: dict[str, str],
    tags: dict[str, str],
) -> Any:
    sdk = _sdk()
    from azure.ai.ml.entities import JobResourceConfiguration

    gpus = max(1, offer.gpus)
    workdir = "/tmp/recipe-code-${LOCAL_RANK:-0}"  # one copy per process: no extraction race
    command = " && ".join(
        [
            f"mkdir -p {workdir}",
            f"tar -xzf ${{{{inputs.code}}}} -C {workdir}",
            f"cd {workdir}",
            # One pip at a time on a node; the processes share the environment.
            "flock /tmp/recipe-pip.lock pip install --quiet -r training_scripts/requirements.txt"
            + (" azure-identity" if "RECIPE_WANDB_SECRET" in env else ""),
            "python -m training_scripts.train --config ${{inputs.recipe}} "
            "--output-dir ${{outputs.model}}",
        ]
    )
    environment = azure.environment or (
        DEFAULT_ENVIRONMENT if recipe.compute.accelerator != "cpu" else CPU_ENVIRONMENT
    )
    job = sdk.command(
        name=name,
        display_name=name,
        experiment_name=azure.experiment or recipe.name,
        command=command,
        environment=environment,
        compute=f"{ws.arm}/computes/{ws.cluster}",
        inputs={key: sdk.Input(type="uri_file", path=uri) for key, uri in inputs.items()},
        outputs={"model": sdk.Output(type="uri_folder")},
        environment_variables=env,
        tags=tags,
        distribution={"type": "pytorch", "process_count_per_instance": gpus},
        instance_count=recipe.compute.nodes,
        timeout=recipe.compute.max_runtime,
    )
    job.resources = JobResourceConfiguration(
        instance_count=recipe.compute.nodes, instance_type=azure.instance_type or None
    )
    job.properties = {**job.properties, **_provenance()}
    return job


def _provenance() -> dict[str, str]:
    """The git properties azure-ai-ml adds at submit; recorded here so plan equals what is sent."""
    from azure.ai.ml.operations._job_ops_helper import get_git_properties

    return get_git_properties()


def rest_body(job: Any, ws: Workspace) -> dict[str, Any]:
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder
    from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object

    rest = to_rest_job_object(job)
    return json.loads(json.dumps(rest, cls=SdkJSONEncoder, exclude_readonly=True))


def job_from_rest(body: dict[str, Any], name: str) -> Any:
    """The job entity again from the planned body: submit sends what plan showed."""
    _sdk()
    from azure.ai.ml.entities import Command, Job

    job = Job._from_rest_object(_rest_object(body, name))
    assert isinstance(job, Command), type(job)
    return job


def _rest_object(body: dict[str, Any], name: str) -> Any:
    from azure.ai.ml._restclient.arm_ml_service.models import JobBase

    return JobBase({**body, "name": name})


# --- calls ---------------------------------------------------------------------------------


def _default_client(scope: dict[str, str]) -> Any:
    sdk = _sdk()
    from azure.identity import DefaultAzureCredential

    return sdk.MLClient(
        DefaultAzureCredential(),
        scope["subscription"],
        scope["resource_group"],
        scope["workspace"],
        enable_telemetry=False,
    )


def _get_job(ml: Any, name: str) -> Any:
    return _maybe(lambda: _call_raw(lambda: ml.jobs.get(name)))


def _maybe(fn: Any) -> Any:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return fn()
    except ResourceNotFoundError:
        return None


def _call_raw(fn: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _call(fn: Any, what: str) -> Any:
    """One Azure call; a missing login or an API refusal becomes one clear line (exit 3)."""
    from azure.core import exceptions

    try:
        return _call_raw(fn)
    except exceptions.ClientAuthenticationError as exc:
        raise ProviderError(
            f"Azure login failed ({_first_line(exc)}); run `az login`, or set AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
        ) from None
    except exceptions.HttpResponseError as exc:
        raise ProviderError(f"could not {what}: {exc.status_code} {_first_line(exc)}") from None
    except exceptions.ServiceRequestError as exc:
        raise ProviderError(f"could not {what}: cannot reach Azure ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
