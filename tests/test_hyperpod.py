"""HyperPod, what is particular to it: the HyperPodPyTorchJob manifest, logs from every
pod, and the cluster's lifecycle through SageMaker's cluster APIs (moto, in-process and
over HTTP). Jobs go through the real kubernetes client to tests/fakes/kubernetes.py.
The contract every backend keeps is tests/test_backend_contract.py."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from providers.aws.hyperpod import GROUP, VERSION, HyperPodJobs, cluster_request
from providers.base import ErrorKind, ProviderError
from providers.staging import cloud_identity
from recipes.loader import load_recipe
from tests.conftest import CLI, HYPERPOD
from tests.fakes.aws import EKS_ARN, REGION, moto_server, server_env, use_fake_keys
from tests.fakes.aws import bucket as make_bucket
from tests.fakes.kubernetes import FakeKubernetes


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_keys(monkeypatch)


def hyperpod_plan() -> Any:
    loaded = load_recipe(HYPERPOD)
    identity = cloud_identity(loaded.recipe.name, loaded.content_hash)
    return loaded, identity, HyperPodJobs().plan(loaded.resolved(), identity)


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
def test_logs_come_from_every_pod(aws_env: None) -> None:
    with FakeKubernetes() as kube:
        clients = {f"s3:{REGION}": make_bucket(), f"k8s:{EKS_ARN}": kube.api_client()}
        provider = HyperPodJobs(clients=clients)
        ref = provider.submit(hyperpod_plan()[2]).ref
        assert ref.ids["target"] == "hyperpod"  # the ledger finds this backend again
        kube.set_condition(ref.run_id, "Running")
        lines = list(provider.logs(ref))
    assert lines[0] == f"[{ref.run_id}-pod-0] launch: node 0\n" and len(lines) == 4
    assert lines[2] == f"[{ref.run_id}-pod-1] launch: node 1\n"


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
    with pytest.raises(ProviderError, match="DescribeCluster failed") as err:
        provider.cluster_status(cluster)
    assert err.value.kind == ErrorKind.NOT_FOUND


def test_cluster_cli_over_http(cli: CLI) -> None:
    with moto_server() as endpoint:
        cli.env.update(server_env(endpoint))
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
