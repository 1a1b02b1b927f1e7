"""SageMaker HyperPod: the cluster's lifecycle through the SageMaker cluster APIs, and
jobs as HyperPodPyTorchJob manifests sent to the Kubernetes API of its EKS orchestrator.

The cluster is long-lived and shared (`recipe cluster create|status|delete`); a
run is one custom object in it. The manifest is part of the plan. Inputs go to
S3 exactly as for training jobs; each pod fetches them, then `hyperpodrun` (the
HyperPod elastic agent, torchrun-compatible) starts one process per GPU. Outputs
and checkpoints go to the cluster's shared file system, so a restarted job resumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from providers import staging
from providers.aws import sdk
from providers.aws.images import training_image
from providers.aws.settings import CAPABILITIES, resolve
from providers.aws.storage import S3Storage
from providers.base import (
    ClusterInfo,
    ClusterPlan,
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
LOG_POLL_S = 5.0
_CONDITIONS = {
    "Succeeded": State.SUCCEEDED,
    "Completed": State.SUCCEEDED,
    "Failed": State.FAILED,
    "Running": State.RUNNING,
    "PodsRunning": State.RUNNING,
    "Restarting": State.RUNNING,
}


@staging.cloud_job
class HyperPodJobs:
    """HyperPodPyTorchJobs on a HyperPod cluster (compute.aws.target: hyperpod), and the
    cluster itself: this backend implements both the job and the cluster seams."""

    name = "aws"
    target = "hyperpod"
    capabilities = CAPABILITIES

    def __init__(self, clients: dict[str, Any] | None = None):
        self.clients = sdk.Clients(clients)

    # --- the job: plan ---------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        if recipe.compute.spot:
            raise RecipeInputError(
                Problem(
                    "HyperPod jobs run on the cluster's own nodes, not spot", field="compute.spot"
                )
            )
        setting = resolve(recipe)
        hp = _hyperpod(setting.section)
        staged = staging.stage(recipe, identity, setting.site(self.target), self.capabilities)
        annotations = staging.final_tags(recipe, identity, K8S_ANNOTATIONS)
        gpu = recipe.compute.accelerator != "cpu"
        image, image_notes = training_image(setting.region, self.target, gpu, setting.section.image)
        manifest = _manifest(staged, image, hp, annotations.tags)
        create = Request(
            api="k8s:CreateHyperPodPyTorchJob",
            body={
                "eks_cluster_arn": hp.eks_cluster_arn,
                "namespace": hp.namespace,
                "manifest": manifest,
            },
        )
        container = manifest["spec"]["replicaSpecs"][0]["template"]["spec"]["containers"][0]
        note = (
            f"runs on HyperPod cluster '{hp.cluster}' (create it with: recipe cluster create "
            "RECIPE); the estimate prices the nodes for the job's duration"
        )
        compute = {"target": self.target, "cluster": hp.cluster, "image": container["image"]}
        plan = staged.plan(create, compute, notes=[*image_notes, note])
        # The cluster's nodes are on demand: no spot figure for a job that cannot use it.
        return dataclasses.replace(plan, estimate=dataclasses.replace(plan.estimate, spot_usd=None))

    log_poll_s = LOG_POLL_S  # how often `logs --follow` polls

    # --- the job: JobApi, the Kubernetes calls the pipeline makes ---------------------

    def storage(self, plan: Plan) -> S3Storage:
        return S3Storage.for_plan(self.clients, plan)

    def find(self, plan: Plan) -> RunRef | None:
        ref = self._ref(plan)
        return ref if self._get(ref) is not None else None

    def create(self, plan: Plan, request: Request) -> RunRef:
        body = request.body
        api = self._kube(plan.compute["region"], body["eks_cluster_arn"])
        sdk.k8s(
            lambda: api.custom.create_namespaced_custom_object(
                GROUP, VERSION, body["namespace"], PLURAL, body["manifest"]
            ),
            "create HyperPodPyTorchJob",
        )
        return self._ref(plan)

    def launched(self, plan: Plan) -> Iterable[str]:
        create = plan.requests[-1].body
        api = self._kube(plan.compute["region"], create["eks_cluster_arn"])
        listed = sdk.k8s(
            lambda: api.custom.list_namespaced_custom_object(
                GROUP, VERSION, create["namespace"], PLURAL
            ),
            "list HyperPodPyTorchJobs",
        )
        return [item["metadata"]["name"] for item in listed.get("items", [])]

    def _ref(self, plan: Plan) -> RunRef:
        create = plan.requests[-1].body
        name = plan.identity.run_id
        ids = {
            "region": plan.compute["region"],
            "job_name": name,
            "eks_cluster_arn": create["eks_cluster_arn"],
            "namespace": create["namespace"],
            "target": self.target,
        }
        return RunRef(self.name, name, ids)

    # --- the job: status / logs / cancel ---------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        job = self._get(ref)
        if job is None:
            raise ProviderError(
                f"HyperPodPyTorchJob {ref.ids['job_name']} not found", ErrorKind.NOT_FOUND
            )
        conditions = [
            c
            for c in (job.get("status") or {}).get("conditions") or []
            if c.get("status") == "True"
        ]
        last = conditions[-1] if conditions else {}
        state = _CONDITIONS.get(last.get("type", ""), State.QUEUED)
        message = last.get("type", "Pending") + (
            f": {last['message']}" if last.get("message") else ""
        )
        return RunStatus(run_id=ref.run_id, provider=self.name, state=state, message=message)

    def stop(self, ref: RunRef) -> RunStatus:
        api = self._kube(ref.ids["region"], ref.ids["eks_cluster_arn"])
        sdk.k8s(
            lambda: api.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ref.ids["namespace"], PLURAL, ref.ids["job_name"]
            ),
            "delete HyperPodPyTorchJob",
        )
        # Deleting the job object ends it with its pods: there is nothing left to ask.
        return RunStatus(ref.run_id, self.name, State.CANCELLED, message="deleted")

    def new_log_lines(self, ref: RunRef, seen: dict[str, Any]) -> Iterator[str]:
        api = self._kube(ref.ids["region"], ref.ids["eks_cluster_arn"])
        namespace = ref.ids["namespace"]
        pods = sdk.k8s(
            lambda: api.core.list_namespaced_pod(
                namespace, label_selector=f"{RUN_LABEL}={ref.run_id}"
            ),
            "list pods",
        )
        for pod in sorted(pods.items, key=lambda p: p.metadata.name):
            pod_name = pod.metadata.name
            text = sdk.k8s(
                lambda n=pod_name: api.core.read_namespaced_pod_log(n, namespace), "read log"
            )
            lines = text.splitlines(keepends=True)
            prefix = f"[{pod_name}] " if len(pods.items) > 1 else ""
            for line in lines[seen.get(pod_name, 0) :]:
                yield prefix + line
            seen[pod_name] = len(lines)

    def _get(self, ref: RunRef) -> dict[str, Any] | None:
        api = self._kube(ref.ids["region"], ref.ids["eks_cluster_arn"])
        return staging.unless_missing(
            lambda: sdk.k8s(
                lambda: api.custom.get_namespaced_custom_object(
                    GROUP, VERSION, ref.ids["namespace"], PLURAL, ref.ids["job_name"]
                ),
                "get HyperPodPyTorchJob",
            )
        )

    def _kube(self, region: str, eks_cluster_arn: str) -> sdk.Kube:
        return sdk.kube(self.clients, eks_cluster_arn, region)

    # --- the cluster -----------------------------------------------------------------

    def plan_cluster(self, recipe: Recipe, identity: RunIdentity) -> ClusterPlan:
        request = cluster_request(recipe, identity)
        return ClusterPlan(resolve(recipe).region, request.body["ClusterName"], request)

    def create_cluster(self, plan: ClusterPlan) -> str:
        sm = self.clients.get("sagemaker", plan.region)
        answer = sdk.call(lambda: sm.create_cluster(**plan.request.body), "CreateCluster")
        return answer["ClusterArn"]

    def cluster_status(self, plan: ClusterPlan) -> ClusterInfo:
        sm = self.clients.get("sagemaker", plan.region)
        return describe_cluster(sm, plan.name)

    def delete_cluster(self, plan: ClusterPlan) -> None:
        sm = self.clients.get("sagemaker", plan.region)
        sdk.call(lambda: sm.delete_cluster(ClusterName=plan.name), "DeleteCluster")


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
    staged: staging.Staged, image: str, hp: Any, annotations: dict[str, str]
) -> dict[str, Any]:
    name = staged.identity.run_id
    instance_type = staged.hardware.offer.instance_type
    nodes = staged.recipe.compute.nodes
    gpus = staged.hardware.processes_per_node
    max_runtime = staged.recipe.compute.max_runtime
    env = staged.env
    inputs = dict(staged.inputs)
    code_uri, recipe_uri = inputs.pop("code"), inputs.pop("recipe")
    channels = inputs
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
            "exec "
            + launch_command(
                f"{WORKDIR}/recipe.json",
                f"--output-dir {output_dir} --no-install --launcher hyperpodrun --nnodes {nodes}",
            ),
        ]
    )
    container_env = {
        **env,
        "PYTHONPATH": f"{WORKDIR}/code",
        **{f"RECIPE_CHANNEL_{c.upper()}": f"{WORKDIR}/data/{c}" for c in channels},
    }
    # GPUs only where there are some: a CPU node has no nvidia.com/gpu to give.
    gpu = staged.recipe.compute.accelerator != "cpu"
    resources = {"nvidia.com/gpu": gpus} if gpu else {}
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
                            # Kubernetes' default 30 s is too short to finish a step and
                            # checkpoint after SIGTERM; hyperpodrun waits 90 s before SIGKILL.
                            "terminationGracePeriodSeconds": 120,
                            "containers": [
                                {
                                    "name": "trainer",
                                    "image": image,
                                    "command": ["bash", "-c", script],
                                    "env": [
                                        {"name": k, "value": v} for k, v in container_env.items()
                                    ],
                                    "resources": {"requests": resources, "limits": resources},
                                    # The elastic agent listens here (AWS's HyperPod
                                    # training operator example, sagemaker-eks-operator-usage).
                                    "ports": [{"containerPort": 8080}],
                                    "volumeMounts": [
                                        {"name": "shared", "mountPath": hp.shared_dir},
                                        {"name": "shm", "mountPath": "/dev/shm"},
                                    ],
                                }
                            ],
                            "volumes": [
                                {
                                    "name": "shared",
                                    "persistentVolumeClaim": {"claimName": hp.claim},
                                },
                                # NCCL needs more shared memory than a container's 64 MiB:
                                # the node's /dev/shm, as the HyperPod EKS examples mount it
                                # (awsome-distributed-training, sagemaker-hyperpod-cli).
                                {
                                    "name": "shm",
                                    "hostPath": {"path": "/dev/shm", "type": "Directory"},
                                },
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


# --- the cluster -----------------------------------------------------------------------------


def cluster_request(recipe: Recipe, identity: RunIdentity) -> Request:
    setting = resolve(recipe)
    hp = _hyperpod(setting.section)
    hardware = staging.hardware(recipe, "aws", setting.region, setting.section.instance_type)
    tags = staging.final_tags(recipe, identity, AWS_TAG_RULES).tags
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
    aws = setting.section
    if aws.subnets:  # CreateClusterRequest.VpcConfig (botocore's sagemaker model)
        body["VpcConfig"] = {"SecurityGroupIds": aws.security_groups, "Subnets": aws.subnets}
    return Request(api="sagemaker:CreateCluster", body=body)


def describe_cluster(sm: Any, name: str) -> ClusterInfo:
    info = sdk.call(lambda: sm.describe_cluster(ClusterName=name), "DescribeCluster")
    nodes = sdk.call(lambda: sm.list_cluster_nodes(ClusterName=name), "ListClusterNodes")
    return ClusterInfo(
        name=info["ClusterName"],
        arn=info["ClusterArn"],
        status=info["ClusterStatus"],
        failure=info.get("FailureMessage") or "",
        instance_groups=tuple(
            {
                "name": g["InstanceGroupName"],
                "instance_type": g["InstanceType"],
                "current": g.get("CurrentCount"),
                "target": g.get("TargetCount"),
            }
            for g in info.get("InstanceGroups", [])
        ),
        nodes=tuple(
            {
                "id": n["InstanceId"],
                "group": n["InstanceGroupName"],
                "type": n["InstanceType"],
                "status": n["InstanceStatus"]["Status"],
            }
            for n in nodes.get("ClusterNodeSummaries", [])
        ),
    )
