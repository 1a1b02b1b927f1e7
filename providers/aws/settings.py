"""compute.aws and the usual environment variables, resolved; what AWS can do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.aws.storage import object_tagging
from providers.base import Capabilities
from providers.staging import Needed, Site, needed_settings, section
from recipes.cost import catalog
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import AWS as AWS_TAG_RULES

CAPABILITIES = Capabilities(
    methods=("lora", "qlora", "full"),
    accelerators=catalog.accelerators("aws"),
    spot=True,
    multi_node=True,
    max_processes_per_node=8,
    targets=("training-job", "hyperpod"),
    clusters=True,
    remote_data=("s3://",),
    idempotent=True,
    why_not={
        "accelerators": "no SageMaker instance type in the catalog has it",
        "remote_data": "SageMaker channels read s3:// only; copy the data to S3",
        "max_processes_per_node": "SageMaker instances have at most 8 GPUs",
    },
)


@dataclass(frozen=True)
class AwsSettings:
    section: Any  # the recipe's compute.aws block (or its defaults)
    region: str
    role: str
    bucket: str  # s3://bucket[/prefix], no trailing slash

    def site(self, target: str) -> Site:
        return Site(
            provider="aws",
            target=target,
            region=self.region,
            base=self.bucket,
            instance_type=self.section.instance_type,
            tag_rules=AWS_TAG_RULES,
            wandb_reference=wandb_reference(self.section),
            upload_api="s3:PutObject",
            object_tags=object_tagging,
        )


NEEDED = (
    Needed(
        "role",
        "SAGEMAKER_ROLE_ARN",
        "SageMaker needs an execution role",
        "arn:aws:iam::ACCOUNT:role/NAME",
    ),
    Needed(
        "bucket",
        "RECIPE_AWS_BUCKET",
        "SageMaker needs an S3 location for code, data and outputs",
        "s3://BUCKET[/PREFIX]",
    ),
)


def resolve(recipe: Recipe) -> AwsSettings:
    aws = section(recipe, "aws")
    values = needed_settings("aws", aws, NEEDED)
    if not values["bucket"].startswith("s3://"):
        raise RecipeInputError(Problem("expected s3://BUCKET[/PREFIX]", field="compute.aws.bucket"))
    vpc = (len(aws.subnets), len(aws.security_groups))
    if vpc != (0, 0) and not (1 <= vpc[0] <= 16 and 1 <= vpc[1] <= 5):
        # VpcConfig of CreateTrainingJob and CreateCluster (botocore's sagemaker model):
        # Subnets 1-16 and SecurityGroupIds 1-5, both required.
        raise RecipeInputError(
            Problem(
                "give 1-16 subnets and 1-5 security_groups together", field="compute.aws.subnets"
            )
        )
    bucket = values["bucket"].rstrip("/")
    return AwsSettings(section=aws, region=aws.region, role=values["role"], bucket=bucket)


def wandb_reference(aws: Any) -> str | None:
    """Where the job's role reads the W&B key (training_scripts.secrets)."""
    return f"aws-secretsmanager:{aws.wandb_secret}" if aws.wandb_secret else None


@dataclass(frozen=True)
class EndpointSettings:
    """What a SageMaker endpoint needs of compute.aws: no bucket, since the model comes from
    the run's own S3 output (the training job's ModelArtifacts)."""

    section: Any
    region: str
    role: str  # ExecutionRoleArn of CreateModel: reads the artifact, pulls the image


def resolve_endpoint(recipe: Recipe) -> EndpointSettings:
    aws = section(recipe, "aws")
    values = needed_settings("aws", aws, NEEDED[:1])  # the role only
    vpc = (len(aws.subnets), len(aws.security_groups))
    if vpc != (0, 0) and not (1 <= vpc[0] <= 16 and 1 <= vpc[1] <= 5):
        # CreateModel's VpcConfig, as CreateTrainingJob's (botocore's sagemaker model).
        raise RecipeInputError(
            Problem(
                "give 1-16 subnets and 1-5 security_groups together", field="compute.aws.subnets"
            )
        )
    return EndpointSettings(section=aws, region=aws.region, role=values["role"])
