"""Azure ML command jobs: the recipe becomes one `command()` job, built with azure-ai-ml.

plan() builds the job entity with the SDK and records the exact REST body the SDK
will PUT (its own serializer, the compute resolved to its ARM id, and the git
provenance the SDK adds), plus the blob uploads of the scripts archive, local data
and recipe.json to the workspace's datastore. submit() uploads (skipping blobs
already there with the same hash) and calls `ml_client.jobs.create_or_update`.
The job name is deterministic, so a second run finds the first job.

The job starts `training_scripts.launch` like every cloud job (secrets, tokenize
once per node, torchrun): Azure ML runs one process per node
(PyTorchDistribution, process_count_per_instance 1) and sets MASTER_ADDR,
MASTER_PORT and NODE_RANK for it, the documented way to bring one's own torchrun
("Distributed training with Azure Machine Learning", PyTorch section,
learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from providers import images, staging
from providers.azure import sdk
from providers.azure.settings import CAPABILITIES, Workspace, resolve
from providers.azure.storage import DatastoreStorage
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
from recipes.schema import Recipe

WORKDIR = "/tmp/recipe-code"
LOG_POLL_S = 5.0
# Azure ML writes each process's output to user_logs/: std_log.txt for a single process,
# std_log_process_<rank>.txt when there are several (one per node here: launch.py).
LOG_DIR = "ExperimentRun/dcid.{name}/user_logs/"
LOG_NAME = re.compile(r"std_log(?:_process_(\d+))?\.txt")
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


@staging.cloud_job
class CommandJobs:
    """Azure ML command jobs on an AmlCompute cluster."""

    name = "azure"
    target = "command-job"
    capabilities = CAPABILITIES

    def __init__(self, ml_client: Any = None):
        self._ml_client = ml_client  # tests inject an MLClient pointed at an HTTP fake
        self._storage: DatastoreStorage | None = None

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        ws = resolve(recipe)
        staged = staging.stage(recipe, identity, ws.site(self.target), self.capabilities)
        gpu = recipe.compute.accelerator != "cpu"
        field = "compute.azure.environment"
        environment, notes = images.choose("azure", self.target, gpu, ws.section.environment, field)
        body = sdk.rest_body(_build_job(staged, ws, environment))
        create = Request(
            api="azureml:CreateOrUpdateJob",
            body={
                "url": f"{ws.arm}/jobs/{identity.run_id}?api-version={sdk.API_VERSION}",
                "job": body,
            },
        )
        if recipe.compute.spot:
            notes += (
                f"spot: runs at low priority; the cluster '{ws.cluster}' must be a "
                "low-priority AmlCompute cluster",
            )
        compute = {
            **ws.scope,
            "cluster": ws.cluster,
            "environment": body["properties"]["environmentId"],
        }
        return staged.plan(create, compute, notes)

    log_poll_s = LOG_POLL_S  # how often `logs --follow` polls

    # --- JobApi: the Azure ML calls the pipeline makes --------------------------------

    def storage(self, plan: Plan) -> DatastoreStorage:
        return self.datastores(_scope(plan.compute))

    def find(self, plan: Plan) -> RunRef | None:
        ref = self._ref(plan)
        return ref if self._get(ref) is not None else None

    def create(self, plan: Plan, request: Request) -> RunRef:
        ref = self._ref(plan)
        ml = self.client(ref.ids)
        job = sdk.job_from_rest(request.body["job"], ref.run_id)
        sdk.call(lambda: ml.jobs.create_or_update(job), "create the Azure ML job")
        return ref

    def launched(self, plan: Plan) -> Iterable[str]:
        ml = self.client(_scope(plan.compute))
        return [j.name for j in sdk.call(lambda: list(ml.jobs.list()), "list Azure ML jobs")]

    def _ref(self, plan: Plan) -> RunRef:
        # The workspace travels with the run, so status/logs/cancel find it from any shell.
        name = plan.identity.run_id
        return RunRef(self.name, name, {"job_name": name, **_scope(plan.compute)})

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        job = self._get(ref)
        if job is None:
            raise ProviderError(
                f"Azure ML job {ref.ids['job_name']} not found", ErrorKind.NOT_FOUND
            )
        state = _STATES.get(job.status or "", State.RUNNING)
        status = RunStatus(
            run_id=ref.run_id, provider=self.name, state=state, message=job.status or ""
        )
        if job.studio_url:
            status.artifacts["studio"] = job.studio_url
        if state == State.SUCCEEDED:
            # The named output "model" (adapter/, merged/ or model/ inside): what an
            # endpoint registers as a Model (providers/azure/endpoint.py).
            status.artifacts["model"] = f"azureml://jobs/{ref.ids['job_name']}/outputs/model"
        return status

    def new_log_lines(self, ref: RunRef, cursor: dict[str, Any]) -> list[str]:
        """Each node's std_log from the workspace artifact store (what the studio shows),
        labelled by rank when there are several."""
        store, directory = self.datastores(ref.ids), LOG_DIR.format(name=ref.ids["job_name"])
        ranks = {}
        for name in store.names("workspaceartifactstore", directory):
            match = LOG_NAME.fullmatch(name[len(directory) :])
            if match:
                ranks[int(match[1] or 0)] = name
        lines = []
        for rank, name in sorted(ranks.items()):
            text = store.read_text("workspaceartifactstore", name)
            position, cursor[name] = cursor.get(name, 0), len(text)
            prefix = f"[rank {rank}] " if len(ranks) > 1 else ""
            lines += [prefix + line for line in text[position:].splitlines(keepends=True)]
        return lines

    def stop(self, ref: RunRef) -> None:
        ml = self.client(ref.ids)
        name = ref.ids["job_name"]
        sdk.call(lambda: ml.jobs.begin_cancel(name).result(), "cancel the Azure ML job")

    def _get(self, ref: RunRef) -> Any:
        ml = self.client(ref.ids)
        name = ref.ids["job_name"]
        return staging.unless_missing(lambda: sdk.call(lambda: ml.jobs.get(name), "get the job"))

    # --- clients ---------------------------------------------------------------------

    def client(self, scope: dict[str, str]) -> Any:
        """The MLClient of the run's workspace (subscription, resource_group, workspace)."""
        if self._ml_client is None:
            self._ml_client = sdk.ml_client(
                scope["subscription"], scope["resource_group"], scope["workspace"]
            )
        return self._ml_client

    def datastores(self, scope: dict[str, str]) -> DatastoreStorage:
        if self._storage is None:
            self._storage = DatastoreStorage(self.client(scope))
        return self._storage


def _scope(values: dict[str, Any]) -> dict[str, str]:
    return {k: values[k] for k in ("subscription", "resource_group", "workspace")}


def _build_job(staged: staging.Staged, ws: Workspace, environment: str) -> Any:
    recipe, azure = staged.recipe, ws.section
    nodes = recipe.compute.nodes
    launch = launch_command(
        "${{inputs.recipe}}", "--output-dir ${{outputs.model}}", f"--nnodes {nodes}"
    )
    command = (
        f"mkdir -p {WORKDIR} && tar -xzf ${{{{inputs.code}}}} -C {WORKDIR} && cd {WORKDIR} "
        f"&& exec {launch}"
    )
    return sdk.command_job(
        name=staged.identity.run_id,
        display_name=staged.identity.run_id,
        experiment_name=azure.experiment or recipe.name,
        command=command,
        environment=environment,
        compute=f"{ws.arm}/computes/{ws.cluster}",
        inputs=staged.inputs,
        outputs=["model"],
        environment_variables=staged.env,
        tags=staged.tags.tags,
        # One process per node: launch.py starts torchrun with one process per GPU.
        distribution={"type": "pytorch", "process_count_per_instance": 1},
        instance_count=nodes,
        instance_type=azure.instance_type or None,
        timeout=recipe.compute.max_runtime,
    )
