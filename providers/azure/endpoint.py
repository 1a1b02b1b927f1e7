"""Azure ML managed online endpoints serving a fine-tune through vLLM's OpenAI server.

plan_endpoint() builds, with azure-ai-ml's entities and its own REST serializer, the
requests deploy sends, in order:

  storage:upload                              the Docker build context (one Dockerfile)
  azureml:CreateOrUpdateEnvironmentVersion    vLLM's image + our entrypoint, the inference routes
  azureml:CreateOrUpdateModelVersion          the training job's output, registered
  azureml:CreateOrUpdateOnlineEndpoint        key auth, tags, no traffic yet
  azureml:CreateOrUpdateOnlineDeployment      model, environment, instances, env, request settings
  azureml:UpdateOnlineEndpointTraffic         {deployment: 100} once the deployment is ready
  azureml:DeleteOtherOnlineDeployments        {"endpoint": NAME, "keep": DEPLOYMENT}: every
                                              other deployment of the endpoint, deleted

The last request retires the previous version, as SageMaker's UpdateEndpoint and the local
backend do: a deployment left at 0% traffic keeps its instances and stays billed. A plan
cannot name those deployments without a call, so its body says which one it keeps; deploy
lists the endpoint's deployments (GET .../onlineEndpoints/NAME/deployments) and deletes
every other one (online_deployments.begin_delete), after checking that the kept one holds
all the traffic. It answers "existing" when there was nothing to retire. It runs outside
the rollback: a failure before it retires nothing (the serving version is untouched), and
a failure in it leaves the new version serving (the error names what is left; deploying
the same plan again retires it). Its remove does nothing: a retired deployment is not
restored by a rollback. The retired deployments' model and environment versions stay
registered (storage only, no instances); `endpoint delete` removes them with the endpoint.

Releases (providers.base.ReleaseBackend, `recipe release`): deploy_candidate sends the
plan's requests but the last two, so the candidate deployment runs beside the stable one
at 0 % (an existing endpoint is not PUT again: its traffic map stays); set_traffic PUTs the
endpoint's `traffic` map; invoke_deployment names the deployment in the
azureml-model-deployment header; traffic reads the deployment's own Azure Monitor metrics
(RequestsPerMinute by envoy_response_code, RequestLatency_P95); retire deletes a
deployment without traffic. Sources are cited at each method.

Why a build context: a managed online deployment cannot set its container's command or
arguments (OnlineDeployment has no such field in the ARM API, azure-ai-ml's
_restclient/arm_ml_service/models OnlineDeploymentProperties), and vllm/vllm-openai takes
everything on its command line. Azure ML's documented answer for custom containers is an
environment built from a Dockerfile ("Deploying vLLM models on Azure Machine Learning with
Managed Online Endpoints", github.com/csiebler/csiebler.github.io @ 06279bb1,
content/posts/vllm-on-azure-machine-learning-managed-online-endpoints-deployment.md): FROM
the vLLM image, an ENTRYPOINT reading the arguments from the deployment's environment.
Ours also finds the artifact root under AZUREML_MODEL_DIR, where Azure mounts the
registered model (/var/azureml-app/azureml-models/<name>/<version>/..., "Use a custom
container to deploy a model to an online endpoint", learn.microsoft.com), and puts it into
vLLM's --model / --lora-modules paths.

Names: the endpoint is deploy.endpoint; an Azure deployment name is 3-32 letters, digits
and dashes, starting with a letter, and scoped to its endpoint (learn.microsoft.com,
"Manage and increase quotas ... for online endpoints", naming limits), so the deployment
is "v" + the plan's 8-hex version (the shared `{endpoint}-{version}` can pass 32). The
model is registered as <endpoint>:<version> and the environment as <endpoint>-vllm:<version>,
so delete_endpoint knows what belongs to the endpoint.

The one value a plan cannot know without a call is the blob URL of the workspace's
datastore: the environment's build.contextUri is planned as the datastore URI of the
uploaded context and resolved to that container's blob URL at deploy (the ARM API takes
blob URIs there: BuildContext.contextUri, "Supports blob URIs on environment creation").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from providers import serving
from providers.azure import sdk
from providers.azure.settings import NEEDED, Workspace
from providers.azure.storage import SCOPE_ENV, DatastoreStorage, blob_metadata, split_uri
from providers.base import (
    Artifact,
    Deployed,
    EndpointPlan,
    EndpointRef,
    EndpointState,
    EndpointStatus,
    ErrorKind,
    ProviderError,
    Request,
    TrafficSample,
)
from providers.staging import needed_settings, section
from recipes.schema import Recipe
from recipes.tags import AZURE as AZURE_TAG_RULES

PORT = 8000  # vLLM's default port, where the inference routes point
# vLLM's OpenAI server answers GET /health with 200 once the engine is up (vllm/entrypoints/
# openai/api_server.py); scoring_route is where Azure sends what reaches the endpoint's
# scoring URI (/score), so the scoring URI is the chat-completions route.
ROUTES = {
    "liveness_route": {"port": PORT, "path": "/health"},
    "readiness_route": {"port": PORT, "path": "/health"},
    "scoring_route": {"port": PORT, "path": "/v1/chat/completions"},
}
# Azure ML managed endpoints: request_timeout_ms at most 180000 ("Manage and increase
# quotas and limits for resources with Azure Machine Learning", online endpoints). The
# default of one concurrent request per instance would starve vLLM's continuous batching.
REQUEST_SETTINGS = {"request_timeout_ms": 180_000, "max_concurrent_requests_per_instance": 32}
# Loading a 7B model (hub download + weights to GPU) takes minutes; liveness must not kill
# the container before /health can answer (probe fields: ProbeSettings in azure-ai-ml).
LIVENESS = {"initial_delay": 600, "period": 10, "timeout": 2, "failure_threshold": 30}
READINESS = {"initial_delay": 60, "period": 10, "timeout": 2, "failure_threshold": 60}
ARTIFACT = "@ARTIFACT@"  # in VLLM_ARGS: the artifact root, found at container start
# The api-version azure-ai-ml 1.35.2 sends for each (its MLClient pins one service client per
# kind: _ml_client.py; seen on the wire in tests/test_endpoint_azure.py).
API_VERSIONS = {
    "environments": "2023-04-01-preview",
    "models": "2023-08-01-preview",
    "onlineEndpoints": "2022-02-01-preview",
    "deployments": "2023-04-01-preview",
}
CONTEXT_DIR = "recipe/serving"
RETIRE = "azureml:DeleteOtherOnlineDeployments"  # the plan's last request (module docstring)
TRAFFIC = "azureml:UpdateOnlineEndpointTraffic"
METRICS_API_VERSION = "2023-10-01"  # Azure Monitor Metrics - List (see traffic())
CODE_DIMENSION = "envoy_response_code"  # RequestsPerMinute's status dimension (deployment level)
MAX_REPLICAS = "recipe.max_replicas"  # deployment property: the autoscale ceiling (see notes)

# The container's entrypoint: find the directory under AZUREML_MODEL_DIR holding the
# marker file (the registered folder itself, or its one subfolder), put it into
# VLLM_ARGS, exec vLLM's OpenAI server (PID 1, so Azure's stop reaches it).
ENTRYPOINT = (
    'set -eu; D="${AZUREML_MODEL_DIR:?Azure ML mounts the model there}"; ROOT=""; '
    'for d in "$D" "$D"/*; do if [ -e "$d/$RECIPE_ARTIFACT_MARKER" ]; then ROOT="$d"; break; '
    'fi; done; if [ -z "$ROOT" ]; then echo "recipe: no $RECIPE_ARTIFACT_MARKER under $D" >&2; '
    "exit 1; fi; exec python3 -m vllm.entrypoints.openai.api_server "
    "${VLLM_ARGS//@ARTIFACT@/$ROOT}"
)

_STATES = {
    "creating": EndpointState.CREATING,
    "updating": EndpointState.UPDATING,
    "succeeded": EndpointState.READY,
    "failed": EndpointState.FAILED,
    "canceled": EndpointState.FAILED,
    "deleting": EndpointState.DELETING,
}


def dockerfile(image: str) -> str:
    return (
        "# recipe endpoint: vLLM's OpenAI server with its arguments from the deployment's\n"
        "# environment (VLLM_ARGS, RECIPE_ARTIFACT_MARKER): Azure ML cannot set a command.\n"
        f"FROM {image}\n"
        f"ENTRYPOINT {json.dumps(['/bin/bash', '-c', ENTRYPOINT])}\n"
    )


def vllm_args(spec: Any) -> list[str]:
    """vLLM's flags for the neutral ServingSpec (vllm/engine/arg_utils.py, entrypoints/openai/
    cli_args.py). With an adapter, the base answers to its hub id and the LoRA module to the
    served name, so a client asking for the fine-tune gets the adapter, never the bare base."""
    args: list[str] = []
    if spec.adapters:
        args += ["--model", spec.base_model, "--enable-lora"]
        for name, path in spec.adapters.items():
            args += ["--lora-modules", f"{name}={ARTIFACT}/{path}"]
        args += ["--max-lora-rank", str(spec.max_lora_rank)]
    else:
        args += [
            "--model",
            f"{ARTIFACT}/{spec.base_model}",
            "--served-model-name",
            spec.served_name,
        ]
    args += ["--max-model-len", str(spec.max_model_len), "--tensor-parallel-size", str(spec.gpus)]
    return [*args, "--host", "0.0.0.0", "--port", str(PORT)]


def marker(spec: Any) -> str:
    """A file only the artifact root has below it: how the entrypoint recognises the root."""
    if spec.adapters:
        return f"{next(iter(spec.adapters.values()))}/adapter_config.json"
    return f"{spec.base_model}/config.json"


def deployment_name(version: str) -> str:
    return f"v{version}"


def _workspace(recipe: Recipe) -> Workspace:
    """compute.azure's workspace (no cluster: endpoints run on Azure's managed instances)."""
    azure = section(recipe, "azure")
    values = needed_settings("azure", azure, NEEDED[: len(SCOPE_ENV)])
    return Workspace(
        section=azure, **values, region=azure.region, datastore=azure.datastore, cluster=""
    )


class OnlineEndpoints:
    """Managed online endpoints in the recipe's Azure ML workspace."""

    name = "azure"

    def __init__(self, ml_client: Any = None, now: Callable[[], float] = time.time):
        self._ml_client = ml_client  # tests inject an MLClient pointed at an HTTP fake
        self._storage: DatastoreStorage | None = None
        self._now = now  # the end of a traffic sample (tests inject the release's clock)

    # --- plan ------------------------------------------------------------------------

    def plan_endpoint(self, recipe: Recipe, artifact: Artifact) -> EndpointPlan:
        ws = _workspace(recipe)
        prepared = serving.prepare(recipe, artifact, self.name, ws.region, AZURE_TAG_RULES)
        spec, tags, endpoint = prepared.serving, prepared.tags.tags, prepared.endpoint
        version, deployment = prepared.version, deployment_name(prepared.version)
        what = f"recipe {recipe.name}, run {artifact.run_id}"

        text = dockerfile(spec.image)
        digest = hashlib.sha256(text.encode()).hexdigest()
        context = ws.uri(f"{CONTEXT_DIR}/{digest[:16]}/")
        upload = Request(
            api="storage:upload",
            body={
                "uri": context + "Dockerfile",
                "sha256": digest,
                "bytes": len(text.encode()),
                **blob_metadata(tags)[0],
                "text": text,
            },
        )
        env_name = f"{endpoint}-vllm"
        environment = Request(
            api="azureml:CreateOrUpdateEnvironmentVersion",
            body={
                "url": f"{ws.arm}/environments/{env_name}/versions/{version}"
                f"?api-version={API_VERSIONS['environments']}",
                "environment": sdk.environment_body(
                    env_name, version, context, ROUTES, tags, f"vLLM server for {endpoint}"
                ),
            },
        )
        model = Request(
            api="azureml:CreateOrUpdateModelVersion",
            body={
                "url": f"{ws.arm}/models/{endpoint}/versions/{version}"
                f"?api-version={API_VERSIONS['models']}",
                "model": sdk.model_body(endpoint, version, artifact.uri, tags, what),
            },
        )
        endpoint_url = (
            f"{ws.arm}/onlineEndpoints/{endpoint}?api-version={API_VERSIONS['onlineEndpoints']}"
        )
        create_endpoint = Request(
            api="azureml:CreateOrUpdateOnlineEndpoint",
            body={
                "url": endpoint_url,
                "endpoint": sdk.online_endpoint_body(endpoint, ws.region, {}, tags, what),
            },
        )
        block = prepared.block
        env = {
            "VLLM_ARGS": shlex.join(vllm_args(spec)),
            "RECIPE_ARTIFACT_MARKER": marker(spec),
        }
        create_deployment = Request(
            api="azureml:CreateOrUpdateOnlineDeployment",
            body={
                "url": f"{ws.arm}/onlineEndpoints/{endpoint}/deployments/{deployment}"
                f"?api-version={API_VERSIONS['deployments']}",
                "deployment": sdk.online_deployment_body(
                    ws.region,
                    name=deployment,
                    endpoint_name=endpoint,
                    description=what,
                    model=f"{ws.arm}/models/{endpoint}/versions/{version}",
                    environment=f"{ws.arm}/environments/{env_name}/versions/{version}",
                    instance_type=prepared.offer.instance_type,
                    instance_count=block.min_replicas,
                    environment_variables=env,
                    request_settings=REQUEST_SETTINGS,
                    liveness_probe=LIVENESS,
                    readiness_probe=READINESS,
                    tags=tags,
                    properties={MAX_REPLICAS: str(block.max_replicas)},
                ),
            },
        )
        traffic = Request(
            api=TRAFFIC,
            body={
                "url": endpoint_url,
                "endpoint": sdk.online_endpoint_body(
                    endpoint, ws.region, {deployment: 100}, tags, what
                ),
            },
        )
        retire = Request(api=RETIRE, body={"endpoint": endpoint, "keep": deployment})
        notes = [
            f"deployment '{deployment}' of endpoint '{endpoint}' (Azure deployment names are "
            "3-32 characters: 'v' + the plan's version); it takes all traffic once ready, then "
            f"every other deployment of '{endpoint}' is deleted ({RETIRE}): the previous "
            "version stops being billed, its model and environment versions stay registered",
            "the environment is built by Azure ML from the uploaded Dockerfile (FROM "
            f"{spec.image}); build.contextUri is the datastore container's blob URL of "
            f"{context}, resolved at deploy",
            f"instances: {block.min_replicas} (instance_count)",
        ]
        if block.max_replicas > block.min_replicas:
            notes.append(
                f"autoscale to {block.max_replicas} instances is an Azure Monitor autoscale "
                "setting on the deployment (Microsoft.Insights/autoscaleSettings, a separate "
                "resource azure-ai-ml does not manage): not created here; e.g. `az monitor "
                f"autoscale create --resource <deployment id> --min-count {block.min_replicas} "
                f"--max-count {block.max_replicas} --count {block.min_replicas}` "
                "(learn.microsoft.com, 'Autoscale online endpoints')"
            )
        if spec.adapters and "/" in spec.base_model:
            notes.append(
                f"the base model {spec.base_model} is downloaded from the Hugging Face hub at "
                "start; a gated model needs HF_TOKEN, which this plan does not set"
            )
        plan = prepared.plan(
            [upload, environment, model, create_endpoint, create_deployment, traffic, retire],
            notes,
        )
        return dataclasses.replace(plan, deployment=deployment)

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, plan: EndpointPlan) -> Deployed:
        """serving.deploy over every request but the last, which retires the other
        deployments once the new one serves: a failure there must not roll back a version
        that already holds all the traffic."""
        ref = self._ref(plan)
        api = _Api(self.client(ref.ids), self.datastores(ref.ids), plan)
        *steps, retire = plan.requests
        if retire.api != RETIRE:  # a plan made without it: nothing to retire
            return serving.deploy(plan, api, ref)
        done = serving.deploy(dataclasses.replace(plan, requests=tuple(steps)), api, ref)
        try:
            outcome = api.apply(retire)
        except ProviderError as exc:
            raise ProviderError(
                f"{exc}; deployment {plan.deployment} serves all the traffic of "
                f"{plan.endpoint} and stays; other deployments may still run (billed): deploy "
                "the same plan again, or delete them by hand",
                exc.kind,
            ) from None
        return dataclasses.replace(done, existing=done.existing and outcome == "existing")

    def _ref(self, plan: EndpointPlan) -> EndpointRef:
        scope = _scope_of(plan)
        return EndpointRef(
            self.name,
            plan.endpoint,
            plan.deployment,
            {**scope, "model": plan.endpoint, "environment": f"{plan.endpoint}-vllm"},
        )

    # --- status / invoke / delete ----------------------------------------------------

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus:
        client = self.client(ref.ids)
        endpoint = sdk.get_endpoint(client, ref.endpoint)
        if endpoint is None:
            return EndpointStatus(ref.endpoint, self.name, EndpointState.ABSENT)
        shown = _text(endpoint.provisioning_state)
        state = _STATES.get(shown.lower(), EndpointState.UPDATING)
        message = f"endpoint {shown}"
        replicas = None
        deployment = sdk.get_deployment(client, ref.endpoint, ref.deployment)
        if deployment is None:
            message += f"; deployment {ref.deployment} not found"
            state = EndpointState.FAILED if state == EndpointState.READY else state
        else:
            replicas = deployment.instance_count
            shown = _text(deployment.provisioning_state)
            message += f"; deployment {ref.deployment} {shown}"
            if state == EndpointState.READY:
                state = _STATES.get(shown.lower(), EndpointState.UPDATING)
        # the SDK lists every deployment in traffic, those without any at 0
        traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items() if int(v)}
        return EndpointStatus(
            endpoint=ref.endpoint,
            provider=self.name,
            state=state,
            message=message,
            url=endpoint.scoring_uri or "",
            deployment=ref.deployment,
            replicas=replicas,
            traffic=traffic,
        )

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        """POST the chat body to the scoring URI (which Azure routes to vLLM's
        /v1/chat/completions) with the endpoint key, fetched now and never kept, and
        azureml-model-deployment naming this deployment (what online_endpoints.invoke does)."""
        return self.invoke_deployment(ref, ref.deployment, body)

    def delete_endpoint(self, ref: EndpointRef) -> None:
        """The endpoint (its deployments go with it), then the model and environment
        versions registered under its names."""
        client = self.client(ref.ids)
        sdk.delete_endpoint(client, ref.endpoint)
        model = ref.ids.get("model", ref.endpoint)
        for version in sdk.model_versions(client, model):
            sdk.delete_model(client, model, version)
        environment = ref.ids.get("environment", f"{ref.endpoint}-vllm")
        for version in sdk.environment_versions(client, environment):
            sdk.delete_environment(client, environment, version)

    # --- releases (providers.base.ReleaseBackend) --------------------------------------

    def deploy_candidate(self, plan: EndpointPlan, stable: EndpointRef | None) -> EndpointRef:
        """The plan's requests but the traffic update and the retirement: the candidate's
        environment, model and deployment beside `stable`, at 0 % (a new deployment gets
        no traffic until the endpoint's map names it). The endpoint request creates the
        endpoint only when it is absent (traffic {}: the first version); an existing
        endpoint is left alone, so its traffic map, and the stable version's share, stay
        as they are. Idempotent; a failure removes what this call created."""
        ref = self._ref(plan)
        api = _Api(self.client(ref.ids), self.datastores(ref.ids), plan)
        steps = tuple(r for r in plan.requests if r.api not in (TRAFFIC, RETIRE))
        serving.deploy(dataclasses.replace(plan, requests=steps), api, ref)
        return ref

    def set_traffic(self, ref: EndpointRef, weights: dict[str, int]) -> None:
        """The endpoint's `traffic` map ({deployment: percent}), read back and PUT again."""
        if sum(weights.values()) != 100:
            raise ProviderError(f"traffic shares must sum to 100, not {weights}")
        client = self.client(ref.ids)
        current = sdk.get_endpoint(client, ref.endpoint)
        if current is None:
            raise ProviderError(f"Azure ML endpoint {ref.endpoint} not found", ErrorKind.NOT_FOUND)
        have = {k: int(v) for k, v in (current.traffic or {}).items() if int(v)}
        if have == {k: int(v) for k, v in weights.items() if int(v)}:
            return
        sdk.set_traffic(client, ref.endpoint, weights)

    def invoke_deployment(
        self, ref: EndpointRef, deployment: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The scoring URI with `azureml-model-deployment: <deployment>`, the header
        online_endpoints.invoke(deployment_name=...) sets (azure-ai-ml 1.35.2,
        operations/_online_endpoint_operations.py; constants EndpointInvokeFields): Azure
        routes the request to that deployment whatever the traffic map says, which is how
        the safe-rollout guide tests a deployment at 0 % ("Perform safe rollout of new
        deployments for real-time inference", learn.microsoft.com). The key is fetched now
        and never kept."""
        client = self.client(ref.ids)
        endpoint = sdk.get_endpoint(client, ref.endpoint)
        if endpoint is None or not endpoint.scoring_uri:
            raise ProviderError(f"Azure ML endpoint {ref.endpoint} not found", ErrorKind.NOT_FOUND)
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {sdk.endpoint_key(client, ref.endpoint)}",
            "azureml-model-deployment": deployment,
        }
        return sdk.post_json(
            client,
            endpoint.scoring_uri,
            body,
            headers,
            f"invoke deployment {deployment} of endpoint {ref.endpoint}",
        )

    def traffic(self, ref: EndpointRef, deployment: str, since: float) -> TrafficSample:
        """The deployment's own Azure Monitor metrics since `since`, one-minute grain.

        Metrics of Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments
        ("Supported metrics for ...onlineEndpoints/deployments", learn.microsoft.com,
        azure-monitor/reference/supported-metrics; Category Traffic):
          RequestsPerMinute   Count, aggregation Average, dimension envoy_response_code
          RequestLatency_P95  Milliseconds, aggregation Average, no dimension
        read with Metrics - List (GET {resource}/providers/Microsoft.Insights/metrics,
        api-version 2023-10-01: timespan, interval, metricnames, aggregation, $filter
        "dim eq '*'" to split by a dimension; azure-rest-api-specs specification/monitor/
        resource-manager/Microsoft.Insights/stable/2023-10-01/metrics_API.json and its
        examples/GetMetric.json). A minute's average of RequestsPerMinute is that minute's
        count, so requests are the sum over the minutes. Errors are the server's: 5xx,
        408 (the model exceeded request_timeout_ms), 424 (Azure's answer when the
        container answers non-200: "Troubleshooting online endpoints deployment and
        scoring", HTTP status codes) and 0 (no answer: a failed connection). The p95 is
        the highest minute's p95: the window's p95 cannot exceed it (conservative)."""
        until = max(self._now(), since + 1)
        client = self.client(ref.ids)
        path = _deployment_id(ref, deployment) + "/providers/Microsoft.Insights/metrics"
        window = {
            "api-version": METRICS_API_VERSION,
            "timespan": f"{_iso(since)}/{_iso(until)}",
            "interval": "PT1M",
            "aggregation": "average",
        }
        what = f"read the metrics of deployment {deployment} of {ref.endpoint}"
        counts = sdk.arm_get(
            client,
            path,
            {**window, "metricnames": "RequestsPerMinute", "$filter": f"{CODE_DIMENSION} eq '*'"},
            what,
        )
        latency = sdk.arm_get(client, path, {**window, "metricnames": "RequestLatency_P95"}, what)
        requests = errors = 0.0
        for series in _series(counts, "RequestsPerMinute"):
            code = _dimension(series, CODE_DIMENSION)
            served = sum(_averages(series))
            requests += served
            if _server_error(code):
                errors += served
        p95s = [v for series in _series(latency, "RequestLatency_P95") for v in _averages(series)]
        return TrafficSample(
            deployment=deployment,
            requests=round(requests),
            errors=round(errors),
            p95_ms=max(p95s) if p95s else None,
            since=since,
            until=until,
        )

    def retire(self, ref: EndpointRef, deployment: str) -> None:
        """Delete a deployment without live traffic (absent is fine); its model and
        environment versions stay registered, as after deploy's retirement."""
        client = self.client(ref.ids)
        current = sdk.get_endpoint(client, ref.endpoint)
        share = int(((current.traffic if current else None) or {}).get(deployment, 0))
        if share:
            raise ProviderError(
                f"deployment {deployment} of endpoint {ref.endpoint} still has {share}% of the "
                "traffic: not deleted",
                ErrorKind.CONFLICT,
            )
        sdk.delete_deployment(client, ref.endpoint, deployment)

    # --- clients ---------------------------------------------------------------------

    def client(self, scope: dict[str, str]) -> Any:
        if self._ml_client is None:
            self._ml_client = sdk.ml_client(
                scope["subscription"], scope["resource_group"], scope["workspace"]
            )
        return self._ml_client

    def datastores(self, scope: dict[str, str]) -> DatastoreStorage:
        if self._storage is None:
            self._storage = DatastoreStorage(self.client(scope))
        return self._storage


def _text(state: Any) -> str:
    """A provisioning state as Azure spells it ("Succeeded"; the SDK may hand an enum)."""
    return str(getattr(state, "value", state) or "")


def _deployment_id(ref: EndpointRef, deployment: str) -> str:
    """The online deployment's ARM id (the resource its Azure Monitor metrics belong to)."""
    ids = ref.ids
    return (
        f"/subscriptions/{ids['subscription']}/resourceGroups/{ids['resource_group']}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{ids['workspace']}/onlineEndpoints/"
        f"{ref.endpoint}/deployments/{deployment}"
    )


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _series(answer: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """The timeseries of one metric in a Metrics - List answer (Response.value[].timeseries)."""
    for found in answer.get("value") or []:
        if str((found.get("name") or {}).get("value", "")).lower() == metric.lower():
            return list(found.get("timeseries") or [])
    return []


def _averages(series: dict[str, Any]) -> list[float]:
    """The minutes with data (a minute without any has no `average`)."""
    return [float(d["average"]) for d in series.get("data") or [] if d.get("average") is not None]


def _dimension(series: dict[str, Any], name: str) -> str:
    for meta in series.get("metadatavalues") or []:
        if str((meta.get("name") or {}).get("value", "")).lower() == name.lower():
            return str(meta.get("value", ""))
    return ""


def _server_error(code: str) -> bool:
    """The server's failure, not the client's (TrafficSample.errors): see traffic()."""
    try:
        status = int(code)
    except ValueError:
        return False
    return status >= 500 or status in (0, 408, 424)


def _scope_of(plan: EndpointPlan) -> dict[str, str]:
    """The workspace, read back from the ARM path of the plan's endpoint request."""
    url = next(r.body["url"] for r in plan.requests if "url" in r.body)
    parts = url.split("/")
    return {
        "subscription": parts[parts.index("subscriptions") + 1],
        "resource_group": parts[parts.index("resourceGroups") + 1],
        "workspace": parts[parts.index("workspaces") + 1],
    }


class _Api:
    """serving.EndpointApi over azure-ai-ml: each request's resource, found or made."""

    def __init__(self, client: Any, storage: DatastoreStorage, plan: EndpointPlan):
        self.client, self.storage, self.plan = client, storage, plan

    def apply(self, request: Request) -> serving.Outcome:
        body, client = request.body, self.client
        if request.api == "storage:upload":
            if self.storage.exists(body["uri"], body["sha256"]):
                return "existing"
            self.storage.put(body, body["text"].encode())
            return "created"
        if request.api == RETIRE:
            return self.retire_others(body["endpoint"], body["keep"])
        name, version = _name_version(body)
        if request.api == "azureml:CreateOrUpdateEnvironmentVersion":
            if sdk.get_environment(client, name, version) is not None:
                return "existing"
            env = json.loads(json.dumps(body["environment"]))
            build = env["properties"]["build"]
            build["contextUri"] = self.blob_url(build["contextUri"])
            sdk.create_environment(client, _arm(body), name, version, env)
            return "created"
        if request.api == "azureml:CreateOrUpdateModelVersion":
            if sdk.get_model(client, name, version) is not None:
                return "existing"
            sdk.create_model(client, _arm(body), name, version, body["model"])
            return "created"
        if request.api == "azureml:CreateOrUpdateOnlineEndpoint":
            self._same_location(body)
            if sdk.get_endpoint(client, self.plan.endpoint) is not None:
                return "existing"
            sdk.put_endpoint(client, _path(body), body["endpoint"])
            return "created"
        if request.api == "azureml:CreateOrUpdateOnlineDeployment":
            if sdk.get_deployment(client, self.plan.endpoint, name) is not None:
                return "existing"
            sdk.put_deployment(client, _path(body), body["deployment"])
            return "created"
        if request.api == TRAFFIC:
            current = sdk.get_endpoint(client, self.plan.endpoint)
            wanted = body["endpoint"]["properties"]["traffic"]
            have = {k: int(v) for k, v in ((current.traffic if current else None) or {}).items()}
            if have == {k: int(v) for k, v in wanted.items()}:
                return "existing"
            sdk.put_endpoint(client, _path(body), body["endpoint"])
            return "updated"
        raise ProviderError(f"no Azure call for {request.api}")

    def remove(self, request: Request) -> None:
        body, client = request.body, self.client
        if request.api == "storage:upload":
            self.storage.delete(body["uri"])
            return
        if request.api == RETIRE:
            return  # a retired deployment is not restored (and deploy runs this step last)
        name, version = _name_version(body)
        if request.api == "azureml:CreateOrUpdateEnvironmentVersion":
            sdk.delete_environment(client, name, version)
        elif request.api == "azureml:CreateOrUpdateModelVersion":
            sdk.delete_model(client, name, version)
        elif request.api == "azureml:CreateOrUpdateOnlineEndpoint":
            sdk.delete_endpoint(client, self.plan.endpoint)
        elif request.api == "azureml:CreateOrUpdateOnlineDeployment":
            sdk.delete_deployment(client, self.plan.endpoint, name)

    def describe(self, request: Request) -> str:
        if request.api == "storage:upload":
            return f"{request.api} {request.body['uri']}"
        if request.api == RETIRE:
            return f"{request.api} {request.body['endpoint']} (keep {request.body['keep']})"
        name, version = _name_version(request.body)
        return f"{request.api} {name}" + (f":{version}" if version else "")

    def retire_others(self, endpoint: str, keep: str) -> serving.Outcome:
        """Delete every deployment of `endpoint` but `keep`, once `keep` has all the traffic."""
        current = sdk.get_endpoint(self.client, endpoint)
        traffic = {k: int(v) for k, v in ((current.traffic if current else None) or {}).items()}
        if traffic.get(keep) != 100:
            raise ProviderError(
                f"deployment {keep} does not hold all the traffic of endpoint {endpoint} "
                f"({traffic or 'none'}): no other deployment was deleted",
                ErrorKind.CONFLICT,
            )
        others = [n for n in sdk.deployment_names(self.client, endpoint) if n != keep]
        for name in others:
            sdk.delete_deployment(self.client, endpoint, name)
        return "updated" if others else "existing"

    def blob_url(self, uri: str) -> str:
        """azureml://datastores/D/paths/P/ -> the blob URL Azure ML builds from."""
        datastore, path = split_uri(uri)
        # The container client's url carries its SAS token: only scheme, host and path.
        url = self.storage.container(datastore).url.split("?", 1)[0]
        return f"{url.rstrip('/')}/{path}"

    def _same_location(self, body: dict[str, Any]) -> None:
        planned = body["endpoint"]["location"]
        actual = sdk.workspace_location(self.client)
        if actual.replace(" ", "").lower() != planned.lower():
            raise ProviderError(
                f"the workspace is in {actual}, the plan in {planned}: set compute.azure.region "
                f"to {actual} and plan again",
                ErrorKind.CONFLICT,
            )


def _path(body: dict[str, Any]) -> str:
    """The resource's ARM id: the planned URL without its query."""
    return str(body["url"].split("?")[0])


def _arm(body: dict[str, Any]) -> str:
    return body["url"].split("?")[0].split("/models/")[0].split("/environments/")[0]


def _name_version(body: dict[str, Any]) -> tuple[str, str]:
    """(name, version) of a versioned asset, or (deployment or endpoint name, "")."""
    parts = body["url"].split("?")[0].split("/")
    if "versions" in parts:
        at = parts.index("versions")
        return parts[at - 1], parts[at + 1]
    return parts[-1], ""


# --- parity: what the bodies say, in neutral terms -------------------------------------------


def parity_view(plan: EndpointPlan) -> dict[str, Any]:
    """Read back from the plan's request bodies (not from plan.serving)."""
    bodies = {r.api: r.body for r in plan.requests}
    deployment = bodies["azureml:CreateOrUpdateOnlineDeployment"]["deployment"]
    props = deployment["properties"]
    env = dict(props["environmentVariables"])
    args = shlex.split(env["VLLM_ARGS"])
    flags: dict[str, list[str]] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
            flags.setdefault(arg, []).append(value)
    root = f"{ARTIFACT}/"
    adapters = dict(m.split("=", 1) for m in flags.get("--lora-modules", []))
    adapters = {k: v.removeprefix(root) for k, v in adapters.items()}
    base = flags["--model"][0].removeprefix(root)
    served = flags.get("--served-model-name", [next(iter(adapters), base)])[0]
    text = bodies["storage:upload"]["text"]
    image = next(line.split()[1] for line in text.splitlines() if line.startswith("FROM "))
    rank = flags.get("--max-lora-rank")
    return {
        "artifact": bodies["azureml:CreateOrUpdateModelVersion"]["model"]["properties"]["modelUri"],
        "image": image,
        "base_model": base,
        "served_name": served,
        "adapters": adapters,
        "max_model_len": int(flags["--max-model-len"][0]),
        "max_lora_rank": int(rank[0]) if rank else None,
        "instance_type": props["instanceType"],
        "min_replicas": deployment["sku"]["capacity"],
        "max_replicas": int(props["properties"][MAX_REPLICAS]),
        "tags": deployment["tags"],
        "env": env,
    }
