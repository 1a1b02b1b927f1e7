"""`compute:` — abstract hardware, plus one optional block per provider.

The abstract part (accelerator, GPUs, nodes, spot) is what a recipe means; each
provider resolves it to its own instance or machine types. The per-provider
blocks carry what only that cloud needs (region, role, workspace...) and an
optional explicit instance type that overrides the resolution.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recipes.schema.common import Duration, Section

Accelerator = Literal["cpu", "T4", "A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100", "H200"]
ACCELERATORS: tuple[str, ...] = Accelerator.__args__  # type: ignore[attr-defined]


class LocalCompute(Section):
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Training processes on this machine; more than one runs under torchrun.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto uses CUDA when present, else the CPU."
    )
    threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads per process (default: cores/processes)."
    )


class HyperPodSpec(Section):
    cluster: str = Field(
        pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", description="HyperPod cluster name."
    )
    eks_cluster_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:eks:[a-z0-9-]+:\d{12}:cluster/.+$",
        description="The EKS cluster that orchestrates the HyperPod cluster.",
    )
    lifecycle_scripts: str = Field(
        pattern=r"^s3://.+", description="s3:// prefix holding the lifecycle scripts."
    )
    on_create: str = Field(default="on_create.sh", description="Lifecycle script run on each node.")
    namespace: str = Field(default="default", description="Kubernetes namespace for jobs.")
    shared_dir: str = Field(
        default="/fsx",
        description="Shared file system mounted on every node (outputs, checkpoints).",
    )
    claim: str = Field(
        default="fsx-claim",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="PersistentVolumeClaim of the shared file system, in the jobs' namespace "
        "(a pod can mount only a claim of its own namespace).",
    )


class AwsCompute(Section):
    region: str = Field(default="us-east-1", description="AWS region.")
    role: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
        description="IAM role ARN SageMaker assumes (default: SAGEMAKER_ROLE_ARN).",
    )
    bucket: str | None = Field(
        default=None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
        description="s3://BUCKET[/PREFIX] for code, data, checkpoints and outputs "
        "(default: RECIPE_AWS_BUCKET).",
    )
    target: Literal["training-job", "hyperpod"] = Field(
        default="training-job", description="SageMaker training job, or a HyperPod cluster."
    )
    instance_type: str | None = Field(
        default=None, description="Explicit instance type (e.g. ml.g5.12xlarge); overrides mapping."
    )
    image: str | None = Field(
        default=None,
        description="Training image URI (default: the AWS PyTorch training container for the region).",
    )
    subnets: list[str] = Field(default_factory=list, description="VPC subnet ids for the job.")
    security_groups: list[str] = Field(
        default_factory=list, description="VPC security group ids (with subnets)."
    )
    kms_key: str | None = Field(
        default=None, description="KMS key for the training volume and the output."
    )
    network_isolation: bool = Field(
        default=False, description="No network inside the container (needs an image with the deps)."
    )
    spot_max_wait: Duration | None = Field(
        default=None,
        description="Spot: longest wait for capacity plus runtime (default 2x max_runtime).",
    )
    wandb_secret: str | None = Field(
        default=None,
        description="Secrets Manager secret (name or ARN) holding the W&B API key; read inside the job.",
    )
    hyperpod: HyperPodSpec | None = Field(
        default=None, description="The HyperPod cluster (for target: hyperpod)."
    )


class AzureCompute(Section):
    subscription: str | None = Field(
        default=None, description="Subscription id (default: AZURE_SUBSCRIPTION_ID)."
    )
    resource_group: str | None = Field(
        default=None, description="Resource group (default: AZURE_RESOURCE_GROUP)."
    )
    workspace: str | None = Field(
        default=None, description="Azure ML workspace (default: AZUREML_WORKSPACE_NAME)."
    )
    region: str = Field(default="eastus", description="The workspace's region (for prices).")
    compute: str | None = Field(default=None, description="AmlCompute cluster name.")
    instance_type: str | None = Field(
        default=None, description="Explicit VM size (e.g. Standard_NC24ads_A100_v4)."
    )
    environment: str | None = Field(
        default=None,
        description="Azure ML environment id (default: the curated ACPT PyTorch environment).",
    )
    datastore: str = Field(
        default="workspaceblobstore", description="Datastore for code, data and recipe.json."
    )
    experiment: str | None = Field(
        default=None, description="Experiment name (default: recipe name)."
    )
    wandb_secret: str | None = Field(
        default=None,
        description="Key Vault secret URI holding the W&B API key; read inside the job.",
    )


class GcpCompute(Section):
    project: str | None = Field(default=None, description="Project id (default: gcloud's).")
    region: str = Field(default="us-central1", description="Vertex AI region.")
    staging_bucket: str | None = Field(
        default=None, description="gs:// bucket for code, recipe.json and outputs."
    )
    machine_type: str | None = Field(
        default=None, description="Explicit machine type (e.g. a2-ultragpu-8g)."
    )
    image: str | None = Field(
        default=None,
        description="Training container URI (default: the image catalog's, the official "
        "PyTorch image); it needs Python >= 3.10 and torch >= 2.6.",
    )
    service_account: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[a-z0-9.-]+\.gserviceaccount\.com$",
        description="Service account the job runs as (default: Vertex AI's custom code "
        "service agent).",
    )
    wandb_secret: str | None = Field(
        default=None,
        description="Secret Manager secret (name, or projects/P/secrets/S[/versions/V]) holding "
        "the W&B API key; read inside the job.",
    )


class ComputeSpec(Section):
    accelerator: Accelerator = Field(default="cpu", description="GPU model per device, or 'cpu'.")
    gpus_per_node: int = Field(default=0, ge=0, le=16, description="GPUs on each node.")
    nodes: int = Field(default=1, ge=1, le=512, description="Machines in the job.")
    spot: bool = Field(default=False, description="Use spot/preemptible capacity.")
    max_runtime: Duration = Field(
        default=24 * 3600, description="Hard wall-clock limit ('24h', '90m', seconds)."
    )
    local: LocalCompute = Field(default_factory=LocalCompute, description="This machine.")
    aws: AwsCompute | None = Field(default=None, description="Amazon SageMaker settings.")
    azure: AzureCompute | None = Field(default=None, description="Azure ML settings.")
    gcp: GcpCompute | None = Field(default=None, description="Vertex AI settings.")
