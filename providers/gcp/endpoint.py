"""Vertex AI endpoints: a fine-tuned run served by vLLM's OpenAI-compatible server.

plan_endpoint() is pure and writes down the calls deploy() makes, in order, the first
three in the REST API's JSON form (camelCase, int64 as strings, durations as "<n>s", enums
by name):

  vertex:CreateEndpoint  EndpointService.CreateEndpoint, with endpointId = deploy.endpoint,
                         so the endpoint's resource name is known before it exists
                         (CreateEndpointRequest.endpoint_id: a leading letter, then up to 63
                         of [a-z0-9-], ending in a letter or digit; deploy.endpoint's own
                         pattern is stricter).
  vertex:UploadModel     ModelService.UploadModel, with modelId = the deployment name
                         (UploadModelRequest.model_id: up to 63 of [a-z0-9_-], not starting
                         with a digit or dash): a custom container running vLLM, whose
                         artifactUri is the run's model directory.
  vertex:DeployModel     EndpointService.DeployModel: dedicated resources from the hardware
                         catalog, a DeployedModel id derived from the version (1-10 digits:
                         DeployedModel.id), and trafficSplit {"0": 100} ("0" names the model
                         being deployed: DeployModelRequest.traffic_split).
  vertex:UndeployOtherModels
                         {"endpoint": ENDPOINT, "keep": DEPLOYED_MODEL_ID}: every other
                         deployed model of the endpoint, undeployed (ours, not an RPC: a
                         GetEndpoint, then EndpointService.UndeployModel for each one with
                         trafficSplit {keep: 100}).

deploy() sends them through serving.deploy: each resource is looked up by its known name
first, so a second deploy of the same plan creates nothing; a new version uploads a new
Model and deploys it to the same endpoint with all the traffic, and the last request
retires the previous deployed model, as SageMaker's UpdateEndpoint and the local backend
do (one left at 0% keeps its replicas and stays billed). A plan cannot name those deployed
models without a call, so its body says which one it keeps; deploy undeploys the others
only once the kept one holds 100% of the traffic, and answers "existing" when there was
nothing to retire. That last request runs outside the rollback: a failure before it
retires nothing (the serving version is untouched), and a failure in it leaves the new
version serving (the error says so; deploying the same plan again finishes). Its remove
does nothing: an undeployed model is not redeployed by a rollback. The retired versions'
Models stay in the Model Registry (not billed by the hour; a redeploy of that version
finds its Model); `endpoint delete` removes them with the endpoint.

The container (providers/images.yaml, endpoint_images, gcp): vLLM's OpenAI server image
with the Google Cloud CLI, as Google's Vertex AI vLLM sample builds it. Vertex copies
artifactUri to its own Cloud Storage directory and names it in AIP_STORAGE_URI ("Custom
container requirements for inference", Vertex AI docs); the command copies that directory
into the container and execs vLLM with the args. Vertex forwards the body of a rawPredict
request unchanged, by POST, to the container's predictRoute and returns the container's
answer as is (aiplatform_v1 ModelContainerSpec.predict_route; the sample calls
/v1/completions this way), so with predictRoute /v1/chat/completions an OpenAI chat body
goes in and vLLM's ChatCompletion comes out.

Why rawPredict and not a chat-completions route: aiplatform_v1 has no ChatCompletions RPC
(it is v1beta1 only, and aimed at Model Garden's own container protocol); rawPredict is GA.
It is sent as google-cloud-aiplatform's Endpoint.raw_predict sends it (models.py): the
raw JSON body through an AuthorizedSession to /v1/{endpoint}:rawPredict. The GAPIC REST
client would wrap the body in an HttpBody message and parse the answer as one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from providers import serving
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
from providers.gcp import sdk
from providers.gcp.settings import GCP_TAG_RULES, resolve_endpoint
from providers.serving import Outcome
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe

PORT = 8080  # ports[0]: Vertex sends predictions and health checks there (AIP_HTTP_PORT)
PREDICT_ROUTE = "/v1/chat/completions"  # vLLM's OpenAI route; rawPredict bodies go here
HEALTH_ROUTE = "/health"  # vLLM answers 200 once the engine is up
ARTIFACT_DIR = "/tmp/artifact"  # where the command copies AIP_STORAGE_URI
# The Google sample's entrypoint copies a gs:// --model the same way (gcloud storage cp -r
# "$URI/*" DIR). Bash expands $AIP_STORAGE_URI at run time; Vertex only expands $(NAME).
FETCH_AND_SERVE = (
    'mkdir -p "$ARTIFACT_DIR" && gcloud storage cp -r "$AIP_STORAGE_URI/*" "$ARTIFACT_DIR" '
    '&& exec python3 -m vllm.entrypoints.openai.api_server "$@"'
)
# vLLM with tensor parallelism shares memory between workers through /dev/shm; Google's
# vLLM samples give the container 16 GB (ModelContainerSpec.shared_memory_size_mb).
SHARED_MEMORY_MB = 16 * 1024
# Copying the artifact, pulling the base model and loading it take minutes; Vertex allows
# up to 2 h (ModelContainerSpec.deployment_timeout).
DEPLOYMENT_TIMEOUT_S = 3600

RETIRE = "vertex:UndeployOtherModels"  # the plan's last request (module docstring)
_RETIRE_NOTE = (
    "once the new deployed model holds 100% of the traffic, every other one on the endpoint "
    f"is undeployed ({RETIRE}): the previous version stops being billed, its Model stays in "
    "the Model Registry"
)


class VertexEndpoints:
    """Vertex AI online prediction endpoints running vLLM."""

    name = "gcp"
    # rawPredict cannot target one deployed model (RawPredictRequest has only endpoint and
    # http_body), so a candidate at 0 % cannot be sent the golden set: releases here
    # refuse quality gates up front instead of rolling back on an unanswerable probe.
    probes_one_deployment = False

    def __init__(
        self,
        endpoints: Any | None = None,
        models: Any | None = None,
        session: Any | None = None,
        api_endpoint: str | None = None,
        monitoring_endpoint: str | None = None,
    ):
        # Tests inject REST EndpointService/ModelService clients, an HTTP session and the
        # base URLs of rawPredict and Cloud Monitoring, all pointed at a fake; otherwise
        # built on first use.
        self.clients = sdk.ServingClients(endpoints, models, session)
        self._api_endpoint = api_endpoint
        self._monitoring = (monitoring_endpoint or sdk.MONITORING_ENDPOINT).rstrip("/")

    # --- plan ------------------------------------------------------------------------

    def plan_endpoint(self, recipe: Recipe, artifact: Artifact) -> EndpointPlan:
        project, region = resolve_endpoint(recipe)
        if not artifact.uri.startswith("gs://"):
            raise RecipeInputError(
                Problem(
                    f"run {artifact.run_id}'s artifact is at {artifact.uri}: Vertex AI reads "
                    "models from Cloud Storage (gs://)",
                    field="--provider",
                )
            )
        # {location}, not {region}: prepare() takes `region` itself (Artifact Registry calls
        # the same thing a location).
        prep = serving.prepare(
            recipe, artifact, self.name, region, GCP_TAG_RULES, location=region, project=project
        )
        parent = f"projects/{project}/locations/{region}"
        endpoint_name = f"{parent}/endpoints/{prep.endpoint}"
        model_name = f"{parent}/models/{prep.deployment}"
        labels = dict(prep.tags.tags)
        create_endpoint = Request(
            api="vertex:CreateEndpoint",
            body={
                "parent": parent,
                "endpointId": prep.endpoint,
                "endpoint": {"displayName": prep.endpoint, "labels": labels},
            },
        )
        upload = Request(
            api="vertex:UploadModel",
            body={
                "parent": parent,
                "modelId": prep.deployment,
                "model": {
                    "displayName": prep.deployment,
                    "artifactUri": artifact.uri,
                    "containerSpec": _container(prep.serving),
                    "labels": labels,
                },
            },
        )
        machine: dict[str, Any] = {"machineType": prep.offer.instance_type}
        if prep.offer.gpus:
            machine["acceleratorType"] = prep.offer.accelerator_type
            machine["acceleratorCount"] = prep.offer.gpus
        deploy = Request(
            api="vertex:DeployModel",
            body={
                "endpoint": endpoint_name,
                "deployedModel": {
                    "id": deployed_model_id(prep.version),
                    "model": model_name,
                    "displayName": prep.deployment,
                    "dedicatedResources": {
                        "machineSpec": machine,
                        "minReplicaCount": prep.block.min_replicas,
                        "maxReplicaCount": prep.block.max_replicas,
                    },
                },
                "trafficSplit": {"0": 100},
            },
        )
        notes = (
            f"the serving image is built once into Artifact Registry ({prep.serving.image}): "
            "Vertex AI prediction only pulls from Artifact Registry or Container Registry",
            f"vLLM downloads {prep.serving.base_model} from the Hugging Face Hub at start-up"
            if prep.serving.adapters
            else "vLLM loads the model from the artifact",
            _RETIRE_NOTE,
        )
        retire = Request(
            api=RETIRE,
            body={"endpoint": endpoint_name, "keep": deployed_model_id(prep.version)},
        )
        return prep.plan((create_endpoint, upload, deploy, retire), notes)

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, plan: EndpointPlan) -> Deployed:
        """serving.deploy over every request but the last, which retires the other deployed
        models once the new one serves: a failure there must not roll back a version that
        already holds all the traffic."""
        api, ref = _Api(self.clients, plan), self._ref(plan)
        *steps, retire = plan.requests
        if retire.api != RETIRE:  # a plan made without it: nothing to retire
            return serving.deploy(plan, api, ref)
        done = serving.deploy(replace(plan, requests=tuple(steps)), api, ref)
        try:
            outcome = api.apply(retire)
        except ProviderError as exc:
            raise ProviderError(
                f"{exc}; {plan.deployment} serves all the traffic of {plan.endpoint} and "
                "stays; other deployed models may still run (billed): deploy the same plan "
                "again, or undeploy them by hand",
                exc.kind,
            ) from None
        return replace(done, existing=done.existing and outcome == "existing")

    def _ref(self, plan: EndpointPlan) -> EndpointRef:
        deploy = next(r.body for r in plan.requests if r.api == "vertex:DeployModel")
        project = deploy["endpoint"].split("/")[1]
        return EndpointRef(
            provider=self.name,
            endpoint=plan.endpoint,
            deployment=plan.deployment,
            ids={
                "project": project,
                "region": plan.region,
                "endpoint": deploy["endpoint"],
                "model": deploy["deployedModel"]["model"],
                "deployed_model_id": deploy["deployedModel"]["id"],
            },
        )

    # --- status / invoke / delete ----------------------------------------------------

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus:
        endpoints = self.clients.endpoints(ref.ids["region"])
        found = sdk.find(
            lambda: endpoints.get_endpoint(name=ref.ids["endpoint"], retry=sdk.read_retry()),
            "GetEndpoint",
        )
        status = EndpointStatus(
            endpoint=ref.endpoint, provider=self.name, state=EndpointState.ABSENT
        )
        if found is None:
            status.message = f"no endpoint {ref.ids['endpoint']}"
            return status
        names = {d.id: d.display_name or d.id for d in found.deployed_models}
        status.url = self._predict_url(ref)
        status.traffic = {names.get(k, k): int(v) for k, v in found.traffic_split.items()}
        mine = next(
            (d for d in found.deployed_models if d.id == ref.ids["deployed_model_id"]), None
        )
        if mine is None:
            # DeployModel adds the deployed model only once its replicas are healthy.
            status.state = EndpointState.CREATING
            status.message = f"{ref.deployment} is not deployed on the endpoint (yet)"
            return status
        status.state = EndpointState.READY
        status.deployment = mine.display_name
        status.replicas = mine.status.available_replica_count if mine.status else None
        status.message = mine.status.message if mine.status and mine.status.message else "deployed"
        return status

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        session = self.clients.session(self._base(ref.ids["region"]))
        return sdk.raw_predict(session, self._predict_url(ref), body, "rawPredict")

    def delete_endpoint(self, ref: EndpointRef) -> None:
        """Undeploy every deployed model (Vertex refuses to delete an endpoint that has one),
        delete the endpoint, then the Models this recipe's deploys uploaded for it."""
        region, name = ref.ids["region"], ref.ids["endpoint"]
        endpoints, models = self.clients.endpoints(region), self.clients.models(region)
        found = sdk.find(
            lambda: endpoints.get_endpoint(name=name, retry=sdk.read_retry()), "GetEndpoint"
        )
        uploaded = {ref.ids["model"].rsplit("/", 1)[-1]}
        if found is not None:
            traffic = {k: int(v) for k, v in found.traffic_split.items()}
            # Zero-traffic ones first: a deployed model with traffic can only leave when the
            # request's trafficSplit takes its share (UndeployModelRequest.traffic_split).
            for deployed in sorted(found.deployed_models, key=lambda d: traffic.get(d.id, 0)):
                uploaded.add(deployed.model.rsplit("/", 1)[-1])
                traffic = _without(traffic, deployed.id)
                _undeploy(endpoints, name, deployed.id, traffic)
            operation = sdk.find(
                lambda: endpoints.delete_endpoint(name=name, retry=sdk.read_retry()),
                "DeleteEndpoint",
            )
            if operation is not None:
                sdk.wait(operation, "DeleteEndpoint")
        parent = name.rsplit("/endpoints/", 1)[0]
        # Every Model a deploy uploads carries the label endpoint=deploy.endpoint (its
        # pattern is already a valid label value, so the mapping leaves it as is).
        listed = sdk.call(
            lambda: list(
                models.list_models(
                    request={"parent": parent, "filter": f'labels.endpoint="{ref.endpoint}"'},
                    retry=sdk.read_retry(),
                )
            ),
            "ListModels",
        )
        uploaded |= {m.name.rsplit("/", 1)[-1] for m in listed}
        for model_id in sorted(uploaded):
            _delete_model(models, f"{parent}/models/{model_id}")

    # --- releases (providers.base.ReleaseBackend; recipes/app/releases.py) ----------------

    def deploy_candidate(self, plan: EndpointPlan, stable: EndpointRef | None) -> EndpointRef:
        """The plan's CreateEndpoint (an existing endpoint is fine), UploadModel and DeployModel,
        without its UndeployOtherModels: the stable version stays, with its traffic.

        DeployModel's trafficSplit is the endpoint's current split plus "0": 0 for the model
        being deployed (DeployModelRequest.traffic_split, aiplatform_v1 docstring: a non-empty
        map overwrites Endpoint.traffic_split, "0" names the model being deployed, the values
        add up to 100; google-cloud-aiplatform's Endpoint._allocate_traffic sends "0" with
        traffic_percentage, 0 included). An endpoint with no traffic yet (the first version)
        gives the candidate 100: it is the only model there. The plan itself is not changed.
        Idempotent: a candidate already deployed is left as it is, traffic included."""
        api, ref = _Api(self.clients, plan), self._ref(plan)
        steps = [r for r in plan.requests if r.api != RETIRE]
        deploy = next(r for r in steps if r.api == "vertex:DeployModel")
        found = api._endpoint(deploy.body["endpoint"])
        current = {k: int(v) for k, v in (found.traffic_split if found else {}).items()}
        if sum(current.values()) == 100:
            split = {**current, "0": 0}
        elif stable is not None:
            raise ProviderError(
                f"endpoint {plan.endpoint} serves no traffic ({current or 'empty split'}) "
                f"although {stable.deployment} should: the candidate was not deployed",
                ErrorKind.CONFLICT,
            )
        else:
            split = {"0": 100}
        quiet = Request(deploy.api, {**deploy.body, "trafficSplit": split})
        steps = [quiet if r is deploy else r for r in steps]
        serving.deploy(replace(plan, requests=tuple(steps)), api, ref)
        return ref

    def set_traffic(self, ref: EndpointRef, weights: dict[str, int]) -> None:
        """EndpointService.UpdateEndpoint with update_mask traffic_split (aiplatform_v1
        Endpoint.traffic_split: DeployedModel id -> percent, adding up to 100; "If a
        DeployedModel's id is not listed in this map, then it receives no traffic").
        Deployments are named "<endpoint>-<version>"; each maps to its DeployedModel's id
        through the endpoint's deployed models (displayName = the deployment name)."""
        if sum(weights.values()) != 100:
            raise ProviderError(f"traffic shares must add up to 100: {weights}", ErrorKind.API)
        endpoints = self.clients.endpoints(ref.ids["region"])
        found = self._get(ref)
        ids = _deployed_ids(found)
        split: dict[str, int] = {}
        for deployment, percent in weights.items():
            deployed_id = ids.get(deployment)
            if deployed_id is None:
                if percent:
                    raise ProviderError(
                        f"{deployment} is not deployed on {ref.ids['endpoint']}: no traffic "
                        "was moved",
                        ErrorKind.NOT_FOUND,
                    )
                continue  # absent and asked for 0%: nothing to route
            split[deployed_id] = int(percent)
        aiplatform_v1 = sdk.module("google.cloud.aiplatform_v1")
        update = aiplatform_v1.UpdateEndpointRequest(
            endpoint=aiplatform_v1.Endpoint(name=found.name, traffic_split=split),
            update_mask={"paths": ["traffic_split"]},
        )
        sdk.call(
            lambda: endpoints.update_endpoint(request=update, retry=sdk.read_retry()),
            "UpdateEndpoint",
        )

    def invoke_deployment(
        self, ref: EndpointRef, deployment: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """One chat request answered by that deployed model, or a ProviderError.

        Vertex AI cannot aim a rawPredict at one DeployedModel of a public endpoint:
        RawPredictRequest has only `endpoint` and `http_body` (aiplatform_v1), and Vertex
        picks the DeployedModel by Endpoint.traffic_split. The v1 requests that do name one
        are ExplainRequest.deployed_model_id (needs an explanation_spec) and
        projects.locations.endpoints.deployedModels.invoke (needs the Model uploaded with
        invokeRoutePrefix "/*", which disables rawPredict, and a dedicated endpoint: "Use
        arbitrary custom routes on a single deployment", Vertex AI docs, Preview); neither
        fits this plan's Model and endpoint, and moving live traffic for a probe is not
        allowed. So the request goes through rawPredict and its answer counts only when the
        response header X-Vertex-AI-Deployed-Model-Id names that deployed model; otherwise
        it raises, and a golden probe of a 0% candidate fails rather than scoring another
        version's answers. It does reach a candidate that is the endpoint's only version."""
        found = self._get(ref)
        deployed_id = _deployed_ids(found).get(deployment)
        if deployed_id is None:
            raise ProviderError(
                f"{deployment} is not deployed on {ref.ids['endpoint']}", ErrorKind.NOT_FOUND
            )
        session = self.clients.session(self._base(ref.ids["region"]))
        answer, served = sdk.raw_predict_served(session, self._predict_url(ref), body, "rawPredict")
        if served != deployed_id:
            raise ProviderError(
                f"Vertex AI routed the probe to deployed model {served or '(unnamed)'}, not to "
                f"{deployment} ({deployed_id}): rawPredict follows the endpoint's traffic "
                "split and cannot target one deployed model",
                ErrorKind.CONFLICT,
            )
        return answer

    def traffic(self, ref: EndpointRef, deployment: str, since: float) -> TrafficSample:
        """The deployed model's own online predictions since `since`, from Cloud Monitoring
        (REST projects.timeSeries.list, monitoring.googleapis.com/v3): the metrics
        aiplatform.googleapis.com/prediction/online/{prediction_count, error_count,
        prediction_latencies} of the monitored resource aiplatform.googleapis.com/Endpoint,
        filtered by its resource label endpoint_id and the metric label deployed_model_id
        (cloud.google.com/monitoring/api/metrics_gcp_a_b#gcp-aiplatform, linked from Vertex
        AI's "Monitoring metrics" page). Counts are DELTA INT64 points, summed; latencies a
        DELTA DISTRIBUTION in ms whose buckets are merged and read at the 95th percentile."""
        found = self._get(ref)
        deployed_id = _deployed_ids(found).get(deployment) or _id_of(deployment)
        until = max(time.time(), since)
        url = f"{self._monitoring}/v3/projects/{ref.ids['project']}/timeSeries"
        session = self.clients.session(self._monitoring)
        endpoint_id = ref.ids["endpoint"].rsplit("/", 1)[-1]

        def series(metric: str) -> list[dict[str, Any]]:
            params = {
                "filter": (
                    f'metric.type="{METRICS}/{metric}" AND resource.type="{MONITORED}" AND '
                    f'resource.labels.endpoint_id="{endpoint_id}" AND '
                    f'metric.labels.deployed_model_id="{deployed_id}"'
                ),
                "interval.startTime": _rfc3339(since),
                "interval.endTime": _rfc3339(until),
                "view": "FULL",
            }
            return sdk.get_pages(session, url, params, "timeSeries", "ListTimeSeries")

        requests = _count(series("prediction_count"))
        errors = _count(series("error_count"))
        p95 = _percentile(series("prediction_latencies"), 0.95)
        return TrafficSample(deployment, requests, errors, p95, since, until)

    def retire(self, ref: EndpointRef, deployment: str) -> None:
        """EndpointService.UndeployModel of that deployed model, only at 0% (absent is fine);
        the request's traffic_split is the rest of the current one (UndeployModelRequest:
        it overwrites Endpoint.traffic_split)."""
        endpoints = self.clients.endpoints(ref.ids["region"])
        found = sdk.find(
            lambda: endpoints.get_endpoint(name=ref.ids["endpoint"], retry=sdk.read_retry()),
            "GetEndpoint",
        )
        if found is None:
            return
        deployed_id = _deployed_ids(found).get(deployment)
        if deployed_id is None:
            return
        traffic = {k: int(v) for k, v in found.traffic_split.items()}
        if traffic.get(deployed_id):
            raise ProviderError(
                f"{deployment} still serves {traffic[deployed_id]}% of {ref.endpoint}: "
                "it was not undeployed",
                ErrorKind.CONFLICT,
            )
        rest = {k: v for k, v in traffic.items() if k != deployed_id}
        _undeploy(endpoints, ref.ids["endpoint"], deployed_id, rest)

    def _get(self, ref: EndpointRef) -> Any:
        endpoints = self.clients.endpoints(ref.ids["region"])
        found = sdk.find(
            lambda: endpoints.get_endpoint(name=ref.ids["endpoint"], retry=sdk.read_retry()),
            "GetEndpoint",
        )
        if found is None:
            raise ProviderError(f"no endpoint {ref.ids['endpoint']}", ErrorKind.NOT_FOUND)
        return found

    # --- helpers ---------------------------------------------------------------------

    def _base(self, region: str) -> str:
        if self._api_endpoint:
            return self._api_endpoint.rstrip("/")
        host = self.clients.api_endpoint(region)
        return host if host.startswith("http") else f"https://{host}"

    def _predict_url(self, ref: EndpointRef) -> str:
        return f"{self._base(ref.ids['region'])}/v1/{ref.ids['endpoint']}:rawPredict"


# --- the EndpointApi deploy goes through ----------------------------------------------------


class _Api:
    """serving.EndpointApi on Vertex AI: find each resource by its planned name, else create."""

    def __init__(self, clients: sdk.ServingClients, plan: EndpointPlan):
        self.endpoints = clients.endpoints(plan.region)
        self.models = clients.models(plan.region)

    def describe(self, request: Request) -> str:
        body = request.body
        if request.api == RETIRE:
            return f"{request.api} {body['endpoint'].rsplit('/', 1)[-1]} (keep {body['keep']})"
        name = body.get("endpointId") or body.get("modelId")
        name = name or body["deployedModel"]["displayName"]
        return f"{request.api} {name}"

    def apply(self, request: Request) -> Outcome:
        return getattr(self, "_apply_" + request.api.split(":", 1)[1])(request.body)

    def remove(self, request: Request) -> None:
        body = request.body
        if request.api == RETIRE:
            return  # an undeployed model is not redeployed (and deploy runs this step last)
        if request.api == "vertex:CreateEndpoint":
            name = f"{body['parent']}/endpoints/{body['endpointId']}"
            operation = sdk.find(
                lambda: self.endpoints.delete_endpoint(name=name, retry=sdk.read_retry()),
                "DeleteEndpoint",
            )
            if operation is not None:
                sdk.wait(operation, "DeleteEndpoint")
        elif request.api == "vertex:UploadModel":
            _delete_model(self.models, f"{body['parent']}/models/{body['modelId']}")
        else:
            endpoint = self._endpoint(body["endpoint"])
            if endpoint is None:
                return
            deployed_id = body["deployedModel"]["id"]
            traffic = {k: int(v) for k, v in endpoint.traffic_split.items()}
            if any(d.id == deployed_id for d in endpoint.deployed_models):
                _undeploy(
                    self.endpoints, body["endpoint"], deployed_id, _without(traffic, deployed_id)
                )

    def _endpoint(self, name: str) -> Any:
        return sdk.find(
            lambda: self.endpoints.get_endpoint(name=name, retry=sdk.read_retry()), "GetEndpoint"
        )

    def _apply_CreateEndpoint(self, body: dict[str, Any]) -> Outcome:  # noqa: N802
        name = f"{body['parent']}/endpoints/{body['endpointId']}"
        found = self._endpoint(name)
        labels = body["endpoint"]["labels"]
        if found is None:
            message = sdk.request_message("CreateEndpointRequest", body)
            operation = sdk.call(
                lambda: self.endpoints.create_endpoint(request=message, retry=sdk.create_retry()),
                "CreateEndpoint",
            )
            sdk.wait(operation, "CreateEndpoint")
            return "created"
        if dict(found.labels) == labels:
            return "existing"
        # A new version: the endpoint's labels follow the run it serves (cost reports).
        aiplatform_v1 = sdk.module("google.cloud.aiplatform_v1")
        update = aiplatform_v1.UpdateEndpointRequest(
            endpoint=aiplatform_v1.Endpoint(name=found.name, labels=labels),
            update_mask={"paths": ["labels"]},
        )
        sdk.call(
            lambda: self.endpoints.update_endpoint(request=update, retry=sdk.read_retry()),
            "UpdateEndpoint",
        )
        return "updated"

    def _apply_UploadModel(self, body: dict[str, Any]) -> Outcome:  # noqa: N802
        name = f"{body['parent']}/models/{body['modelId']}"
        found = sdk.find(
            lambda: self.models.get_model(name=name, retry=sdk.read_retry()), "GetModel"
        )
        if found is not None:
            return "existing"
        message = sdk.request_message("UploadModelRequest", body)
        operation = sdk.call(
            lambda: self.models.upload_model(request=message, retry=sdk.create_retry()),
            "UploadModel",
        )
        sdk.wait(operation, "UploadModel")
        return "created"

    def _apply_DeployModel(self, body: dict[str, Any]) -> Outcome:  # noqa: N802
        endpoint = self._endpoint(body["endpoint"])
        wanted = body["deployedModel"]["id"]
        if endpoint is not None and any(d.id == wanted for d in endpoint.deployed_models):
            return "existing"
        message = sdk.request_message("DeployModelRequest", body)
        operation = sdk.call(
            lambda: self.endpoints.deploy_model(request=message, retry=sdk.create_retry()),
            "DeployModel",
        )
        sdk.wait(operation, "DeployModel")
        return "created"

    def _apply_UndeployOtherModels(self, body: dict[str, Any]) -> Outcome:  # noqa: N802
        """Undeploy every deployed model but `keep`, once `keep` has all the traffic."""
        name, keep = body["endpoint"], body["keep"]
        endpoint = self._endpoint(name)
        traffic = {k: int(v) for k, v in (endpoint.traffic_split if endpoint else {}).items()}
        if traffic.get(keep) != 100:
            raise ProviderError(
                f"deployed model {keep} does not hold all the traffic of {name} "
                f"({traffic or 'none'}): no other deployed model was undeployed",
                ErrorKind.CONFLICT,
            )
        others = [d.id for d in endpoint.deployed_models if d.id != keep]
        for deployed_id in others:
            _undeploy(self.endpoints, name, deployed_id, {keep: 100})
        return "updated" if others else "existing"


def _undeploy(endpoints: Any, endpoint: str, deployed_id: str, traffic: dict[str, int]) -> None:
    aiplatform_v1 = sdk.module("google.cloud.aiplatform_v1")
    request = aiplatform_v1.UndeployModelRequest(
        endpoint=endpoint, deployed_model_id=deployed_id, traffic_split=traffic
    )
    operation = sdk.find(
        lambda: endpoints.undeploy_model(request=request, retry=sdk.read_retry()),
        "UndeployModel",
    )
    if operation is not None:
        sdk.wait(operation, "UndeployModel")


def _delete_model(models: Any, name: str) -> None:
    operation = sdk.find(
        lambda: models.delete_model(name=name, retry=sdk.read_retry()), "DeleteModel"
    )
    if operation is not None:
        sdk.wait(operation, "DeleteModel")


def _without(traffic: dict[str, int], deployed_id: str) -> dict[str, int]:
    """The split once `deployed_id` leaves: its share goes to the largest remaining one
    (the shares must add up to 100, or the map be empty when none remains)."""
    share = traffic.get(deployed_id, 0)
    rest = {k: v for k, v in traffic.items() if k != deployed_id}
    if share and rest:
        top = max(rest, key=lambda k: rest[k])
        rest[top] += share
    return rest


# --- release helpers --------------------------------------------------------------------------

METRICS = "aiplatform.googleapis.com/prediction/online"
MONITORED = "aiplatform.googleapis.com/Endpoint"


def _id_of(deployment: str) -> str:
    """A deployment "<endpoint>-<version>"'s DeployedModel id, as plan_endpoint derives it."""
    return deployed_model_id(deployment.rsplit("-", 1)[-1])


def _deployed_ids(endpoint: Any) -> dict[str, str]:
    """Deployment name -> DeployedModel id of the endpoint's deployed models (the plan sets
    displayName to the deployment; the id derived from the version agrees)."""
    ids: dict[str, str] = {}
    for deployed in endpoint.deployed_models:
        if deployed.display_name:
            ids[deployed.display_name] = deployed.id
    return ids


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _count(series: list[dict[str, Any]]) -> int:
    """The sum of every point of DELTA INT64 series (TypedValue.int64Value: a JSON string)."""
    return sum(int(p["value"].get("int64Value", 0)) for s in series for p in s.get("points", []))


def _bounds(options: dict[str, Any]) -> list[float]:
    """A Distribution's finite bucket bounds (google.api.Distribution.BucketOptions): bucket
    0 is below bounds[0], bucket i is [bounds[i-1], bounds[i]), the last is the overflow."""
    if "explicitBuckets" in options:
        return [float(b) for b in options["explicitBuckets"]["bounds"]]
    if "exponentialBuckets" in options:
        e = options["exponentialBuckets"]
        n, g, scale = int(e["numFiniteBuckets"]), float(e["growthFactor"]), float(e["scale"])
        return [scale * g**i for i in range(n + 1)]
    lin = options["linearBuckets"]
    n, width, offset = int(lin["numFiniteBuckets"]), float(lin["width"]), float(lin["offset"])
    return [offset + width * i for i in range(n + 1)]


def _percentile(series: list[dict[str, Any]], q: float) -> float | None:
    """The q-quantile of DELTA DISTRIBUTION points, their bucket counts merged, linearly
    interpolated inside its bucket (as Monitoring's ALIGN_PERCENTILE_* aligners read
    buckets); None with no sample. A quantile in the overflow bucket reads as its lower
    bound, the largest finite one."""
    bounds: list[float] | None = None
    counts: list[int] = []
    for s in series:
        for point in s.get("points", []):
            dist = point["value"].get("distributionValue", {})
            these = [int(c) for c in dist.get("bucketCounts", [])]
            if not these:
                continue
            mine = _bounds(dist["bucketOptions"])
            if bounds is None:
                bounds, counts = mine, [0] * (len(mine) + 1)
            elif mine != bounds:
                raise ProviderError("latency buckets differ between points", ErrorKind.API)
            for i, c in enumerate(these):
                counts[i] += c
    total = sum(counts)
    if bounds is None or not total:
        return None
    rank, seen = q * total, 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i == 0:
                return bounds[0]
            if i > len(bounds) - 1:
                return bounds[-1]
            low, high = bounds[i - 1], bounds[i]
            return low + (high - low) * (rank - seen) / c
        seen += c
    return bounds[-1]


# --- the container ---------------------------------------------------------------------------


def deployed_model_id(version: str) -> str:
    """DeployedModel.id must be 1-10 digits: the 8-hex-digit version as a number fits."""
    return str(int(version, 16))


def _container(spec: Any) -> dict[str, Any]:
    """ModelContainerSpec: vLLM's OpenAI server behind Vertex's predict and health routes.

    vLLM's flags (docs.vllm.ai, "OpenAI-Compatible Server" and "LoRA Adapters", v0.11):
    --model (a hub id or a directory), --served-model-name, --enable-lora, --lora-modules
    NAME=PATH, --max-lora-rank, --max-model-len, --tensor-parallel-size, --host, --port.
    """
    args = ["--host=0.0.0.0", f"--port={PORT}"]
    if spec.adapters:
        args.append(f"--model={spec.base_model}")
    else:
        args += [
            f"--model={ARTIFACT_DIR}/{spec.base_model}",
            f"--served-model-name={spec.served_name}",
        ]
    args += [f"--tensor-parallel-size={spec.gpus}", f"--max-model-len={spec.max_model_len}"]
    if spec.adapters:
        args += ["--enable-lora", f"--max-lora-rank={spec.max_lora_rank}", "--lora-modules"]
        args += [f"{name}={ARTIFACT_DIR}/{path}" for name, path in spec.adapters.items()]
    return {
        "imageUri": spec.image,
        "command": ["bash", "-c", FETCH_AND_SERVE, "vllm"],
        "args": args,
        "env": [{"name": "ARTIFACT_DIR", "value": ARTIFACT_DIR}],
        "ports": [{"containerPort": PORT}],
        "predictRoute": PREDICT_ROUTE,
        "healthRoute": HEALTH_ROUTE,
        "deploymentTimeout": f"{DEPLOYMENT_TIMEOUT_S}s",
        "sharedMemorySizeMb": str(SHARED_MEMORY_MB),  # int64: a string in proto JSON
    }


# --- parity ----------------------------------------------------------------------------------


def parity_view(plan: EndpointPlan) -> dict[str, Any]:
    """What the plan's bodies tell the server, read back from them (not from plan.serving)."""
    bodies = {r.api: r.body for r in plan.requests}
    model = bodies["vertex:UploadModel"]["model"]
    container = model["containerSpec"]
    resources = bodies["vertex:DeployModel"]["deployedModel"]["dedicatedResources"]
    flags: dict[str, str] = {}
    modules: list[str] = []
    args = container["args"]
    for i, arg in enumerate(args):
        if arg == "--lora-modules":
            modules = [a for a in args[i + 1 :] if not a.startswith("--")]
        elif arg.startswith("--"):
            key, _, value = arg.partition("=")
            flags[key] = value
    root = ARTIFACT_DIR + "/"
    adapters = {}
    for module in modules:
        name, _, path = module.partition("=")
        adapters[name] = path.removeprefix(root)
    base = flags["--model"].removeprefix(root)
    served = flags.get("--served-model-name") or next(iter(adapters), base)
    rank = flags.get("--max-lora-rank")
    return {
        "artifact": model["artifactUri"],
        "image": container["imageUri"],
        "base_model": base,
        "served_name": served,
        "adapters": adapters,
        "max_model_len": int(flags["--max-model-len"]),
        "max_lora_rank": int(rank) if rank else None,
        "instance_type": resources["machineSpec"]["machineType"],
        "min_replicas": resources["minReplicaCount"],
        "max_replicas": resources["maxReplicaCount"],
        "tags": dict(model["labels"]),
        "env": {e["name"]: e["value"] for e in container["env"]},
    }
