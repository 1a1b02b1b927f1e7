"""SageMaker HyperPod: the cluster's lifecycle through the SageMaker cluster APIs, and
jobs as HyperPodPyTorchJob manifests sent to the Kubernetes API of its EKS orchestrator.

The cluster is long-lived and shared (`recipe cluster create|status|delete`); a
run is one custom object in it. The manifest is part of the plan. Inputs go to
S3 exactly as for training jobs; each pod fetches them, then `hyperpodrun` (the
HyperPod elastic agent, torchrun-compatible) starts one process per GPU. Outputs
and checkpoints go to the cluster's shared file system, so a restarted job resumes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from collections.abc import Iterator
from typing import Any

from providers import cloud
from providers.aws import wandb_reference
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
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import AWS as AWS_TAG_RULES
from recipes.tags import K8S_ANNOTATIONS

GROUP, VERSION, PLURAL, KIND = (
    "sagemaker.amazonaws.com",
    "v1",
    "hyperpodpytorchjobs",
    "HyperPodPyTorchJob",
)
WORKDIR = "/workspace"
RUN_LABEL = "recipe-run-id"


# --- the job ---------------------------------------------------------------------------------


def plan_job(recipe: Recipe, identity: RunIdentity, caps: Capabilities) -> Plan:
    check_capabilities("aws", caps, recipe)
    if recipe.compute.spot:
        raise RecipeInputError(
            Problem("HyperPod jobs run on the cluster's own nodes, not spot", field="compute.spot")
        )
    setting = cloud.aws_settings(recipe)
    hp = _hyperpod(setting.section)
    hardware = cloud.hardware(recipe, "aws", setting.region, setting.section.instance_type)
    name = identity.run_id
    tags = cloud.final_tags(recipe, identity, AWS_TAG_RULES)
    annotations = cloud.final_tags(recipe, identity, K8S_ANNOTATIONS)
    uploads = [cloud.upload_code(setting.bucket)]
    data_uploads, channels = cloud.data_uploads(recipe, setting.bucket)
    uploads += data_uploads
    recipe_uri = f"{setting.bucket}/runs/{name}/recipe.json"
    job_recipe = cloud.with_data_locations(recipe, channels)
    uploads.append(
        Request(
            api="s3:PutObject",
            body={
                "uri": recipe_uri,
                "content": cloud.job_config_for(job_recipe, identity, "aws"),
                "run_scoped": True,
            },
        )
    )
    env = cloud.job_env(recipe, identity, wandb_reference(setting.section))
    manifest = _manifest(
        name=name,
        hp=hp,
        image=setting.section.image or pytorch_training_image(setting.region, gpu=True),
        instance_type=hardware.offer.instance_type,
        nodes=recipe.compute.nodes,
        gpus=max(1, hardware.offer.gpus),
        code_uri=uploads[0].body["uri"],
        recipe_uri=recipe_uri,
        channels=channels,
        env=env,
        annotations=annotations.tags,
        max_runtime=recipe.compute.max_runtime,
    )
    create = Request(
        api="k8s:CreateHyperPodPyTorchJob",
        body={
            "eks_cluster_arn": hp.eks_cluster_arn,
            "namespace": hp.namespace,
            "manifest": manifest,
        },
    )
    compute = {
        **hardware.compute(recipe),
        "region": setting.region,
        "target": "hyperpod",
        "cluster": hp.cluster,
        "image": manifest["spec"]["replicaSpecs"][0]["template"]["spec"]["containers"][0]["image"],
    }
    notes = (
        *hardware.notes,
        *cloud.rename_notes(tags),
        f"runs on HyperPod cluster '{hp.cluster}' (create it with: recipe cluster create RECIPE); "
        "the estimate prices the nodes for the job's duration",
    )
    return Plan(
        provider="aws",
        identity=identity,
        requests=(*uploads, create),
        compute=compute,
        tags=tags.tags,
        estimate=hardware.estimate,
        notes=notes,
    )


def _hyperpod(aws: Any) -> Any:
    if aws.hyperpod is None:
        raise RecipeInputError(
            Problem(
                "target: hyperpod needs the cluster: cluster, eks_cluster_arn, lifecycle_scripts",
                field="compute.aws.hyperpod",
            )
        )
    return aws.hyperpod


def _manifest(
    *,
    name: str,
    hp: Any,
    image: str,
    instance_type: str,
    nodes: int,
    gpus: int,
    code_uri: str,
    recipe_uri: str,
    channels: dict[str, str],
    env: dict[str, str],
    annotations: dict[str, str],
    max_runtime: int,
) -> dict[str, Any]:
    output_dir = f"{hp.shared_dir}/recipe-runs/{name}"
    fetch = [(code_uri, f"{WORKDIR}/code.tar.gz"), (recipe_uri, f"{WORKDIR}/recipe.json")]
    fetch += [
        (uri, f"{WORKDIR}/data/{channel}/{uri.rsplit('/', 1)[-1]}")
        for channel, uri in channels.items()
    ]
    # Each pod fetches its inputs with the pod's IAM identity (EKS Pod Identity / IRSA).
    fetch_py = "\n".join(
        [
            "import boto3, os",
            "s3 = boto3.client('s3')",
            f"for uri, dest in {fetch!r}:",
            "    bucket, key = uri[len('s3://'):].split('/', 1)",
            "    os.makedirs(os.path.dirname(dest), exist_ok=True)",
            "    s3.download_file(bucket, key, dest)",
        ]
    )
    script = "\n".join(
        [
            "set -e",
            f"mkdir -p {WORKDIR}/code",
            f"python - <<'PY'\n{fetch_py}\nPY",
            f"tar -xzf {WORKDIR}/code.tar.gz -C {WORKDIR}/code",
            f"cd {WORKDIR}/code",
            "pip install --quiet -r training_scripts/requirements.txt hyperpod-elastic-agent",
            f"exec python -m training_scripts.launch --config {WORKDIR}/recipe.json "
            f"--output-dir {output_dir} --no-install --launcher hyperpodrun --nnodes {nodes}",
        ]
    )
    container_env = {
        **env,
        "PYTHONPATH": f"{WORKDIR}/code",
        **{f"RECIPE_CHANNEL_{c.upper()}": f"{WORKDIR}/data/{c}" for c in channels},
    }
    resources = {"nvidia.com/gpu": gpus}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": hp.namespace,
            "labels": {RUN_LABEL: name},
            "annotations": annotations,
        },
        "spec": {
            "nprocPerNode": str(gpus),
            "replicaSpecs": [
                {
                    "name": "pod",
                    "replicas": nodes,
                    "template": {
                        "metadata": {"labels": {RUN_LABEL: name}},
                        "spec": {
                            "nodeSelector": {"node.kubernetes.io/instance-type": instance_type},
                            "containers": [
                                {
                                    "name": "trainer",
                                    "image": image,
                                    "command": ["bash", "-c", script],
                                    "env": [
                                        {"name": k, "value": v} for k, v in container_env.items()
                                    ],
                                    "resources": {"requests": resources, "limits": resources},
                                    "volumeMounts": [
                                        {"name": "shared", "mountPath": hp.shared_dir}
                                    ],
                                }
                            ],
                            "volumes": [
                                {
                                    "name": "shared",
                                    "persistentVolumeClaim": {"claimName": "fsx-claim"},
                                }
                            ],
                        },
                    },
                }
            ],
            "runPolicy": {
                "cleanPodPolicy": "None",
                "jobMaxRetryCount": 3,
                "activeDeadlineSeconds": max_runtime,
            },
        },
    }


def submit_job(provider: Any, plan: Plan) -> RunRef:
    from providers.aws import _orphans, put_object

    region = plan.compute["region"]
    *uploads, create = plan.requests
    body = create.body
    name = plan.identity.run_id
    ids = {
        "region": region,
        "job_name": name,
        "eks_cluster_arn": body["eks_cluster_arn"],
        "namespace": body["namespace"],
        "target": "hyperpod",
    }
    ref = RunRef(provider="aws", run_id=name, ids=ids)
    api = kube(provider, body["eks_cluster_arn"], region)
    if _get_job(api, ref) is not None:
        return RunRef(ref.provider, ref.run_id, {**ids, "existing": "true"})
    s3 = provider.client("s3", region)
    done: list[str] = []
    try:
        for upload in uploads:
            if put_object(s3, upload.body, plan.tags):
                done.append(upload.body["uri"])
        _k8s(
            lambda: api.custom.create_namespaced_custom_object(
                GROUP, VERSION, body["namespace"], PLURAL, body["manifest"]
            ),
            "create HyperPodPyTorchJob",
        )
    except ProviderError as exc:
        if "409" in str(exc):
            return RunRef(ref.provider, ref.run_id, {**ids, "existing": "true"})
        raise ProviderError(f"{exc}{_orphans(s3, uploads, done)}") from None
    return ref


def job_status(provider: Any, ref: RunRef) -> RunStatus:
    api = kube(provider, ref.ids["eks_cluster_arn"], ref.ids["region"])
    job = _get_job(api, ref)
    if job is None:
        raise ProviderError(f"HyperPodPyTorchJob {ref.ids['job_name']} not found")
    conditions = [
        c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"
    ]
    last = conditions[-1] if conditions else {}
    state = {
        "Succeeded": State.SUCCEEDED,
        "Completed": State.SUCCEEDED,
        "Failed": State.FAILED,
        "Running": State.RUNNING,
        "PodsRunning": State.RUNNING,
        "Restarting": State.RUNNING,
    }.get(last.get("type", ""), State.QUEUED)
    message = last.get("type", "Pending") + (f": {last['message']}" if last.get("message") else "")
    return RunStatus(run_id=ref.run_id, provider="aws", state=state, message=message)


def job_logs(provider: Any, ref: RunRef, follow: bool) -> Iterator[str]:
    import time

    api = kube(provider, ref.ids["eks_cluster_arn"], ref.ids["region"])
    namespace = ref.ids["namespace"]
    seen: dict[str, int] = {}
    while True:
        done = not follow or job_status(provider, ref).state.terminal
        pods = _k8s(
            lambda: api.core.list_namespaced_pod(
                namespace, label_selector=f"{RUN_LABEL}={ref.run_id}"
            ),
            "list pods",
        )
        for pod in sorted(pods.items, key=lambda p: p.metadata.name):
            pod_name = pod.metadata.name
            text = _k8s(
                lambda n=pod_name: api.core.read_namespaced_pod_log(n, namespace), "read log"
            )
            lines = text.splitlines(keepends=True)
            prefix = f"[{pod_name}] " if len(pods.items) > 1 else ""
            for line in lines[seen.get(pod_name, 0) :]:
                yield prefix + line
            seen[pod_name] = len(lines)
        if done:
            return
        time.sleep(5)


def job_cancel(provider: Any, ref: RunRef) -> RunStatus:
    current = job_status(provider, ref)
    if current.state.terminal:
        return current
    api = kube(provider, ref.ids["eks_cluster_arn"], ref.ids["region"])
    _k8s(
        lambda: api.custom.delete_namespaced_custom_object(
            GROUP, VERSION, ref.ids["namespace"], PLURAL, ref.ids["job_name"]
        ),
        "delete HyperPodPyTorchJob",
    )
    return RunStatus(run_id=ref.run_id, provider="aws", state=State.CANCELLED, message="deleted")


def _get_job(api: Any, ref: RunRef) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return api.custom.get_namespaced_custom_object(
            GROUP, VERSION, ref.ids["namespace"], PLURAL, ref.ids["job_name"]
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _k8s_error(exc, "get HyperPodPyTorchJob") from None


def _k8s(fn: Any, what: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return fn()
    except ApiException as exc:
        raise _k8s_error(exc, what) from None


def _k8s_error(exc: Any, what: str) -> ProviderError:
    reason = exc.reason or ""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        reason = json.loads(exc.body).get("message", reason)
    return ProviderError(f"Kubernetes refused to {what}: {exc.status} {reason}")


# --- the Kubernetes client of the EKS orchestrator -------------------------------------------


class Kube:
    def __init__(self, api_client: Any):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)


def kube(provider: Any, eks_cluster_arn: str, region: str) -> Kube:
    """The cluster's Kubernetes API (injected under "k8s:<arn>" in tests)."""
    key = f"k8s:{eks_cluster_arn}"
    if key not in provider._clients:
        provider._clients[key] = Kube(_eks_api_client(provider, eks_cluster_arn, region))
    client = provider._clients[key]
    return client if isinstance(client, Kube) else Kube(client)


def _eks_api_client(provider: Any, eks_cluster_arn: str, region: str) -> Any:
    try:
        from kubernetes import client
    except ImportError:
        raise ProviderError(
            "HyperPod jobs need the kubernetes client: pip install '.[aws]'"
        ) from None
    from providers.aws import call

    eks = provider.client("eks", region)
    cluster_name = eks_cluster_arn.rsplit("/", 1)[-1]
    info = call(lambda: eks.describe_cluster(name=cluster_name), "eks DescribeCluster")["cluster"]
    config = client.Configuration()
    config.host = info["endpoint"]
    with tempfile.NamedTemporaryFile(prefix="eks-ca-", suffix=".crt", delete=False) as ca:
        ca.write(base64.b64decode(info["certificateAuthority"]["data"]))
    config.ssl_ca_cert = ca.name
    config.api_key = {
        "authorization": "Bearer " + eks_token(provider.client("sts", region), cluster_name)
    }
    return client.ApiClient(config)


def eks_token(sts: Any, cluster_name: str) -> str:
    """What `aws eks get-token` prints: a presigned STS GetCallerIdentity URL, base64url."""
    from botocore.signers import RequestSigner

    service = sts.meta.service_model.service_id
    signer = RequestSigner(
        service,
        sts.meta.region_name,
        "sts",
        "v4",
        sts._request_signer._credentials,
        sts.meta.events,
    )
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{sts.meta.region_name}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {"x-k8s-aws-id": cluster_name},
            "context": {},
        },
        region_name=sts.meta.region_name,
        expires_in=60,
        operation_name="",
    )
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


# --- the cluster -----------------------------------------------------------------------------


def cluster_request(recipe: Recipe, identity: RunIdentity) -> Request:
    setting = cloud.aws_settings(recipe)
    hp = _hyperpod(setting.section)
    hardware = cloud.hardware(recipe, "aws", setting.region, setting.section.instance_type)
    tags = cloud.final_tags(recipe, identity, AWS_TAG_RULES).tags
    tags = {k: v for k, v in tags.items() if k != "run_id"}  # the cluster outlives runs
    body = {
        "ClusterName": hp.cluster,
        "InstanceGroups": [
            {
                "InstanceGroupName": "workers",
                "InstanceType": hardware.offer.instance_type,
                "InstanceCount": recipe.compute.nodes,
                "LifeCycleConfig": {"SourceS3Uri": hp.lifecycle_scripts, "OnCreate": hp.on_create},
                "ExecutionRole": setting.role,
                "ThreadsPerCore": 1,
            }
        ],
        "Orchestrator": {"Eks": {"ClusterArn": hp.eks_cluster_arn}},
        "NodeRecovery": "Automatic",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    return Request(api="sagemaker:CreateCluster", body=body)


def create_cluster(provider: Any, region: str, request: Request) -> dict[str, Any]:
    from providers.aws import call

    sm = provider.client("sagemaker", region)
    return call(lambda: sm.create_cluster(**request.body), "CreateCluster")


def describe_cluster(provider: Any, region: str, name: str) -> dict[str, Any]:
    from providers.aws import call

    sm = provider.client("sagemaker", region)
    info = call(lambda: sm.describe_cluster(ClusterName=name), "DescribeCluster")
    nodes = call(lambda: sm.list_cluster_nodes(ClusterName=name), "ListClusterNodes")
    return {
        "name": info["ClusterName"],
        "arn": info["ClusterArn"],
        "status": info["ClusterStatus"],
        "failure": info.get("FailureMessage") or "",
        "instance_groups": [
            {
                "name": g["InstanceGroupName"],
                "instance_type": g["InstanceType"],
                "current": g.get("CurrentCount"),
                "target": g.get("TargetCount"),
            }
            for g in info.get("InstanceGroups", [])
        ],
        "nodes": [
            {
                "id": n["InstanceId"],
                "group": n["InstanceGroupName"],
                "type": n["InstanceType"],
                "status": n["InstanceStatus"]["Status"],
            }
            for n in nodes.get("ClusterNodeSummaries", [])
        ],
    }


def delete_cluster(provider: Any, region: str, name: str) -> dict[str, Any]:
    from providers.aws import call

    sm = provider.client("sagemaker", region)
    return call(lambda: sm.delete_cluster(ClusterName=name), "DeleteCluster")


def latest_attempt(provider: Any, plan: Plan) -> int:
    create = plan.requests[-1].body
    api = kube(provider, create["eks_cluster_arn"], plan.compute["region"])
    listed = _k8s(
        lambda: api.custom.list_namespaced_custom_object(
            GROUP, VERSION, create["namespace"], PLURAL
        ),
        "list HyperPodPyTorchJobs",
    )
    names = [item["metadata"]["name"] for item in listed.get("items", [])]
    return cloud.highest_attempt(cloud.name_prefix(plan.identity), names)
