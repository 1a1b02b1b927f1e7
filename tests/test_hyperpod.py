"""HyperPod: the cluster through SageMaker's cluster APIs (moto), jobs through the real
kubernetes client against an HTTP fake of the cluster's Kubernetes API."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from moto import mock_aws

from providers.aws.hyperpod import GROUP, PLURAL, VERSION, HyperPodJobs, cluster_request
from providers.aws.sdk import Kube
from providers.base import RunRef, State
from providers.staging import cloud_identity
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLI
from tests.http_fake import FakeServer, Seen, json_reply
from tests.test_aws import BUCKET, FAKE_KEYS, REGION

HYPERPOD = CATALOG / "support-triage-hyperpod.yaml"
EKS_ARN = "arn:aws:eks:us-east-1:123456789012:cluster/hyperpod-eks"
JOBS = rf"/apis/{GROUP}/{VERSION}/namespaces/(?P<ns>[^/]+)/{PLURAL}"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def hyperpod_plan() -> Any:
    loaded = load_recipe(HYPERPOD)
    identity = cloud_identity(loaded.recipe.name, loaded.content_hash)
    return loaded, identity, HyperPodJobs().plan(loaded.resolved(), identity)


class FakeKubernetes:
    """The slice of the Kubernetes API the HyperPod backend uses, with realistic bodies."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.server = FakeServer()
        s = self.server
        s.route("POST", JOBS, self.create)
        s.route("GET", JOBS, self.list)
        s.route("GET", JOBS + r"/(?P<name>[^/]+)", self.get)
        s.route("DELETE", JOBS + r"/(?P<name>[^/]+)", self.delete)
        s.route("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods", self.pods)
        s.route("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log", self.log)

    @staticmethod
    def status(code: int, reason: str, message: str) -> Any:
        return json_reply(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def create(self, request: Seen, _: re.Match[str]) -> Any:
        body = request.json()
        name = body["metadata"]["name"]
        if name in self.jobs:
            return self.status(409, "AlreadyExists", f'{PLURAL}.{GROUP} "{name}" already exists')
        self.jobs[name] = {
            **body,
            "status": {"conditions": [{"type": "Created", "status": "True"}]},
        }
        return json_reply(201, self.jobs[name])

    def list(self, _: Seen, __: re.Match[str]) -> Any:
        return json_reply(
            200,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "HyperPodPyTorchJobList",
                "items": list(self.jobs.values()),
                "metadata": {},
            },
        )

    def get(self, _: Seen, match: re.Match[str]) -> Any:
        job = self.jobs.get(match["name"])
        if job is None:
            return self.status(404, "NotFound", f'{PLURAL}.{GROUP} "{match["name"]}" not found')
        return json_reply(200, job)

    def delete(self, _: Seen, match: re.Match[str]) -> Any:
        self.jobs.pop(match["name"])
        return json_reply(200, {"kind": "Status", "status": "Success"})

    def pods(self, request: Seen, _: re.Match[str]) -> Any:
        selector = request.query["labelSelector"][0]
        items = [
            {"metadata": {"name": f"{name}-pod-{i}", "labels": {"recipe-run-id": name}}}
            for name in self.jobs
            if selector == f"recipe-run-id={name}"
            for i in range(2)
        ]
        return json_reply(
            200, {"kind": "PodList", "apiVersion": "v1", "items": items, "metadata": {}}
        )

    def log(self, _: Seen, match: re.Match[str]) -> Any:
        return (
            200,
            {"Content-Type": "text/plain"},
            f"launch: node {match['pod'][-1]}\nstep 1/10\n".encode(),
        )

    def set_condition(self, name: str, kind: str, message: str = "") -> None:
        self.jobs[name]["status"]["conditions"].append(
            {"type": kind, "status": "True", "message": message}
        )


@pytest.fixture
def kube() -> Any:
    fake = FakeKubernetes()
    with fake.server:
        yield fake


def provider_with(kube: FakeKubernetes) -> HyperPodJobs:
    from kubernetes import client

    config = client.Configuration()
    config.host = kube.server.url
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    return HyperPodJobs(
        clients={f"s3:{REGION}": s3, f"k8s:{EKS_ARN}": Kube(client.ApiClient(config))}
    )


def test_plan_holds_the_manifest() -> None:
    _, identity, plan = hyperpod_plan()
    create = plan.requests[-1]
    assert create.api == "k8s:CreateHyperPodPyTorchJob"
    manifest = create.body["manifest"]
    assert (
        manifest["kind"] == "HyperPodPyTorchJob" and manifest["apiVersion"] == f"{GROUP}/{VERSION}"
    )
    spec = manifest["spec"]
    assert spec["nprocPerNode"] == "4" and spec["replicaSpecs"][0]["replicas"] == 2
    pod = spec["replicaSpecs"][0]["template"]["spec"]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "ml.g5.12xlarge"}
    script = pod["containers"][0]["command"][2]
    assert "--launcher hyperpodrun --nnodes 2" in script
    assert f"/fsx/recipe-runs/{identity.run_id}" in script
    assert manifest["metadata"]["annotations"]["cost_center"] == "cc-4711"
    assert plan.compute["target"] == "hyperpod" and plan.compute["world_size"] == 8


@mock_aws
def test_job_submit_status_logs_cancel(aws_env: None, kube: FakeKubernetes) -> None:
    provider = provider_with(kube)
    _, identity, plan = hyperpod_plan()
    ref = provider.submit(plan).ref
    assert ref.ids["target"] == "hyperpod"
    posted = [s for s in kube.server.seen if s.method == "POST"]
    assert posted[0].json() == plan.requests[-1].body["manifest"]  # exactly the plan

    again = provider.submit(plan)
    assert again.existing
    assert len([s for s in kube.server.seen if s.method == "POST"]) == 1
    assert provider.latest_attempt(plan) == 1

    assert provider.status(ref).state == State.QUEUED
    kube.set_condition(ref.run_id, "Running")
    assert provider.status(ref).state == State.RUNNING
    lines = list(provider.logs(ref))
    assert lines[0] == f"[{ref.run_id}-pod-0] launch: node 0\n" and len(lines) == 4
    cancelled = provider.cancel(ref)
    assert cancelled.state == State.CANCELLED and ref.run_id not in kube.jobs

    gone = RunRef(provider="aws", run_id="x", ids={**ref.ids, "job_name": "x"})
    from providers.base import ProviderError

    with pytest.raises(ProviderError, match="not found"):
        provider.status(gone)


@mock_aws
def test_cluster_lifecycle(aws_env: None) -> None:
    loaded, identity, _ = hyperpod_plan()
    request = cluster_request(loaded.resolved(), identity)
    assert request.body["Orchestrator"] == {"Eks": {"ClusterArn": EKS_ARN}}
    assert "run_id" not in {t["Key"] for t in request.body["Tags"]}  # the cluster outlives runs
    provider = HyperPodJobs(
        clients={f"sagemaker:{REGION}": boto3.client("sagemaker", region_name=REGION)}
    )
    cluster = provider.plan_cluster(loaded.resolved(), identity)
    assert cluster.request == request and cluster.region == REGION
    arn = provider.create_cluster(cluster)
    assert arn.endswith("/support-triage") or "support-triage" in arn
    info = provider.cluster_status(cluster)
    assert info.status == "InService"
    assert info.instance_groups[0]["instance_type"] == "ml.g5.12xlarge"
    assert len(info.nodes) == 2
    provider.delete_cluster(cluster)
    from providers.base import ErrorKind, ProviderError

    with pytest.raises(ProviderError, match="DescribeCluster failed") as err:
        provider.cluster_status(cluster)
    assert err.value.kind == ErrorKind.NOT_FOUND


def test_cluster_cli_over_http(cli: CLI) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        cli.env.update(FAKE_KEYS)
        cli.env["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        planned = cli("cluster", "plan", str(HYPERPOD), "--format", "json")
        assert json.loads(planned.stdout)["api"] == "sagemaker:CreateCluster"
        created = cli("cluster", "create", str(HYPERPOD))
        assert created.returncode == 0, created.stderr
        status = cli("cluster", "status", str(HYPERPOD), "--format", "json")
        assert json.loads(status.stdout)["status"] == "InService"
        deleted = cli("cluster", "delete", str(HYPERPOD), "--yes")
        assert deleted.returncode == 0 and "deleting" in deleted.stdout
        missing = cli("cluster", "status", str(HYPERPOD))
        assert missing.returncode == 3 and missing.stderr.startswith(
            "error: DescribeCluster failed"
        )
    finally:
        server.stop()
