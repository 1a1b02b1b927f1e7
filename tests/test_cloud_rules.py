"""The clouds' own rules, each pinned by the defect it caused (issue 10), with its source."""

from __future__ import annotations

import copy
import urllib.parse
from typing import Any

import pytest

from providers.base import Plan
from providers.registry import for_recipe
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from recipes.tags import AWS, K8S_ANNOTATIONS, map_tags
from tests.conftest import CATALOG, CLOUD_DEFAULTS, HYPERPOD, MULTINODE
from training_scripts.launch import Topology, commands


@pytest.fixture(autouse=True)
def clouds(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CLOUD_DEFAULTS.items():
        monkeypatch.setenv(key, value)


def plan_for(path: Any, overrides: list[str], provider: str = "aws") -> Plan:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    return for_recipe(provider, recipe).plan(recipe, cloud_identity(recipe.name, "0" * 64))


# --- S3 and AWS tags -------------------------------------------------------------------------


def test_s3_objects_get_at_most_10_tags_and_the_plan_shows_them() -> None:
    """botocore s3 model, PutObjectTagging: "Amazon S3 limits the maximum number of tags to
    10 tags per object"; PutObject's Tagging is URL query encoded."""
    extra = [f"tags.team{i}=t{i}" for i in range(6)]  # 4 recipe tags + 6 + 3 run tags = 13
    plan = plan_for(MULTINODE, extra)
    uploads = [r for r in plan.requests if r.api == "s3:PutObject"]
    assert uploads
    for upload in uploads:
        tags = dict(urllib.parse.parse_qsl(upload.body["Tagging"]))
        assert len(tags) == 10 and tags["cost_center"] == "cc-4711"
    assert any("S3 objects carry at most 10 tags" in n for n in plan.notes)
    job_tags = plan.requests[-1].body["Tags"]
    assert len(job_tags) == 13  # the job itself takes up to 50


@pytest.mark.parametrize("value", ["two\twords", "two\nlines", "cr\rhere", "bell\x07"])
def test_aws_tag_values_refuse_control_characters(value: str) -> None:
    """botocore sagemaker model, TagValue pattern [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*: \\p{Z}
    (separators) has no tab, newline or other control character."""
    mapped = map_tags({"team": value}, AWS)
    assert mapped.tags["team"] != value and "\t" not in mapped.tags["team"]
    assert all(c.isalnum() or c in " _" for c in mapped.tags["team"])


def test_aws_tags_keep_unicode_letters_and_separators() -> None:
    mapped = map_tags({"équipe": "données\u00a0ml", "zh": "训练"}, AWS)
    assert mapped.tags == {"équipe": "données\u00a0ml", "zh": "训练"} and not mapped.renamed


# --- HyperPod --------------------------------------------------------------------------------


def pod_spec(plan: Plan) -> dict[str, Any]:
    return plan.requests[-1].body["manifest"]["spec"]["replicaSpecs"][0]["template"]["spec"]


def test_hyperpod_pods_get_shared_memory_and_time_to_checkpoint() -> None:
    spec = pod_spec(plan_for(HYPERPOD, []))
    (container,) = spec["containers"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": "shm", "hostPath": {"path": "/dev/shm", "type": "Directory"}} in spec["volumes"]
    assert spec["terminationGracePeriodSeconds"] >= 120


def test_hyperpod_cpu_pods_ask_for_no_gpu() -> None:
    cpu = ["compute.accelerator=cpu", "compute.gpus_per_node=0", "training.batch_size=16"]
    overrides = [*cpu, "compute.aws.instance_type=ml.c5.2xlarge"]
    spec = pod_spec(plan_for(HYPERPOD, overrides))
    assert spec["containers"][0]["resources"] == {"requests": {}, "limits": {}}
    gpu = pod_spec(plan_for(HYPERPOD, []))["containers"][0]["resources"]
    assert gpu["limits"] == {"nvidia.com/gpu": 4}


def test_hyperpod_claim_is_a_setting() -> None:
    spec = pod_spec(plan_for(HYPERPOD, ["compute.aws.hyperpod.claim=team-a-fsx"]))
    assert {"name": "shared", "persistentVolumeClaim": {"claimName": "team-a-fsx"}} in spec[
        "volumes"
    ]
    with pytest.raises(RecipeInputError, match="compute.aws.hyperpod.claim"):
        plan_for(HYPERPOD, ["compute.aws.hyperpod.claim=Not_A_Name"])


@pytest.mark.parametrize("key", ["_team", "team_", "-x", "x."])
def test_annotation_keys_start_and_end_alphanumeric(key: str) -> None:
    """Kubernetes apimachinery IsQualifiedName: ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]."""
    with pytest.raises(RecipeInputError, match="start and end with a letter or digit"):
        map_tags({key: "v"}, K8S_ANNOTATIONS)
    assert map_tags({"cost_center": "v"}, K8S_ANNOTATIONS).tags == {"cost_center": "v"}


def test_hyperpod_cluster_gets_the_vpc() -> None:
    """botocore sagemaker model: CreateClusterRequest.VpcConfig {SecurityGroupIds 1-5,
    Subnets 1-16}."""
    from providers.aws.hyperpod import cluster_request

    vpc = ["compute.aws.subnets=[subnet-1,subnet-2]", "compute.aws.security_groups=[sg-1]"]
    loaded = load_recipe(HYPERPOD, vpc)
    body = cluster_request(loaded.resolved(), cloud_identity("x", "0" * 64)).body
    assert body["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1", "subnet-2"]}
    with pytest.raises(RecipeInputError, match="1-16 subnets and 1-5 security_groups"):
        plan_for(HYPERPOD, ["compute.aws.subnets=[subnet-1]"])


def test_hyperpodrun_sends_sigterm_before_sigkill() -> None:
    """hyperpod-elastic-agent README: --shutdown-signal defaults to SIGKILL."""
    (_, agent) = commands("r.json", "/fsx/run", Topology(2, 0, "x", 4), "hyperpodrun")
    i = agent.index("--shutdown-signal")
    assert agent[i + 1] == "SIGTERM" and "--shutdown-timeout" in agent


# --- SageMaker training jobs ------------------------------------------------------------------


def test_network_isolation_needs_an_image_with_the_requirements() -> None:
    with pytest.raises(RecipeInputError, match="isolated container cannot install") as err:
        plan_for(MULTINODE, ["compute.aws.network_isolation=true"])
    assert err.value.problems[0].field == "compute.aws.network_isolation"
    own = plan_for(
        MULTINODE,
        [
            "compute.aws.network_isolation=true",
            "compute.aws.image=1.dkr.ecr.us-east-1.amazonaws.com/ft:1",
        ],
    )
    assert (
        "--no-install" in own.requests[-1].body["AlgorithmSpecification"]["ContainerEntrypoint"][2]
    )


def test_volume_kms_key_takes_no_alias() -> None:
    """botocore sagemaker model: ResourceConfig.VolumeKmsKeyId is a key ID or key ARN;
    OutputDataConfig.KmsKeyId also takes an alias."""
    cpu = ["compute.accelerator=cpu", "compute.gpus_per_node=0", "training.batch_size=16"]
    on_ebs = [*cpu, "compute.aws.instance_type=ml.m5.xlarge"]
    with pytest.raises(RecipeInputError, match="VolumeKmsKeyId takes a key ID or key ARN"):
        plan_for(CATALOG / "quickstart.yaml", [*on_ebs, "compute.aws.kms_key=alias/ml"])
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    body = plan_for(CATALOG / "quickstart.yaml", [*on_ebs, f"compute.aws.kms_key={arn}"])
    create = body.requests[-1].body
    assert create["ResourceConfig"]["VolumeKmsKeyId"] == arn
    assert create["OutputDataConfig"]["KmsKeyId"] == arn
    # An alias still encrypts the output where the instance has no EBS volume to encrypt.
    nvme = plan_for(MULTINODE, ["compute.aws.kms_key=alias/ml"]).requests[-1].body
    assert nvme["OutputDataConfig"]["KmsKeyId"] == "alias/ml"
    assert "VolumeKmsKeyId" not in nvme["ResourceConfig"]


def test_azure_blob_metadata_names_are_identifiers() -> None:
    """Azure Storage: metadata names follow C# identifier rules (letters, digits, _; not
    starting with a digit)."""
    from providers.azure.storage import blob_metadata

    fields, _ = blob_metadata({"cost-center": "a", "1team": "b", "équipe": "c", "ok_1": "d"})
    assert fields["metadata"] == {"cost_center": "a", "_1team": "b", "_quipe": "c", "ok_1": "d"}


def test_hyperpod_shows_no_spot_price() -> None:
    plan = plan_for(HYPERPOD, [])
    assert plan.estimate.spot_usd is None and plan.estimate.on_demand_usd > 0


@pytest.mark.parametrize(
    ("provider", "path"),
    [
        ("aws", MULTINODE),
        ("aws", HYPERPOD),
        ("azure", CATALOG / "support-triage-a100.yaml"),
        ("gcp", CATALOG / "quickstart.yaml"),
    ],
)
def test_every_cloud_hands_its_signals_to_the_launcher(provider: str, path: Any) -> None:
    """A stop or a preemption SIGTERMs the container's first process: each command `exec`s
    training_scripts.launch (no shell left in between), which forwards the signal to the
    trainer; tests/test_job_entry.py shows the trainer then checkpoints and resumes."""
    overrides = ["compute.azure.wandb_secret=https://kv.vault.azure.net/secrets/w"]
    plan = plan_for(path, overrides if provider == "azure" else [], provider)
    body = plan.requests[-1].body
    command = {
        "sagemaker:CreateTrainingJob": lambda: body["AlgorithmSpecification"][
            "ContainerEntrypoint"
        ][2],
        "k8s:CreateHyperPodPyTorchJob": lambda: body["manifest"]["spec"]["replicaSpecs"][0][
            "template"
        ]["spec"]["containers"][0]["command"][2],
        "azureml:CreateOrUpdateJob": lambda: body["job"]["properties"]["command"],
        "vertex:CreateCustomJob": lambda: body["customJob"]["jobSpec"]["workerPoolSpecs"][0][
            "containerSpec"
        ]["command"][2],
    }[plan.requests[-1].api]()
    last = command.strip().splitlines()[-1].split("&&")[-1].strip()
    assert last.startswith("exec python -m training_scripts.launch "), last


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        [
            "compute.accelerator=cpu",
            "compute.gpus_per_node=0",
            "training.batch_size=16",
            "compute.aws.instance_type=ml.c5.2xlarge",
        ],
        ["compute.aws.hyperpod.namespace=team-a", "tags.cost_center=cc 4711/x"],
    ],
    ids=["gpu", "cpu", "namespace-and-odd-tags"],
)
def test_hyperpod_manifests_fit_the_crd(overrides: list[str]) -> None:
    import jsonschema

    from tests.fakes.hyperpod_crd import SCHEMA

    manifest = plan_for(HYPERPOD, overrides).requests[-1].body["manifest"]
    jsonschema.validate(manifest, SCHEMA)
    pod = manifest["spec"]["replicaSpecs"][0]["template"]["spec"]
    # The elastic agent's port, as the AWS example declares it (sagemaker-eks-operator-usage).
    assert {"containerPort": 8080} in pod["containers"][0]["ports"]


def test_the_crd_schema_catches_what_the_operator_refuses() -> None:
    import jsonschema

    from tests.fakes.hyperpod_crd import SCHEMA

    manifest = plan_for(HYPERPOD, []).requests[-1].body["manifest"]
    for path, bad in (
        (("spec", "nprocPerNode"), 4),
        (("spec", "runPolicy", "cleanPodPolicy"), "Never"),
        (("metadata", "name"), "Has_Upper"),
    ):
        broken = copy.deepcopy(manifest)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)
