"""compute.aws and the usual environment variables, resolved; what AWS can do."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from providers.base import Capabilities
from providers.staging import Site, section
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
        )


def resolve(recipe: Recipe) -> AwsSettings:
    aws = section(recipe, "aws")
    role = aws.role or os.environ.get("SAGEMAKER_ROLE_ARN")
    bucket = aws.bucket or os.environ.get("RECIPE_AWS_BUCKET")
    problems = []
    if not role:
        problems.append(
            Problem(
                "SageMaker needs an execution role",
                field="compute.aws.role",
                hint="set compute.aws.role or SAGEMAKER_ROLE_ARN to arn:aws:iam::ACCOUNT:role/NAME",
            )
        )
    if not bucket:
        problems.append(
            Problem(
                "SageMaker needs an S3 location for code, data and outputs",
                field="compute.aws.bucket",
                hint="set compute.aws.bucket or RECIPE_AWS_BUCKET to s3://BUCKET[/PREFIX]",
            )
        )
    elif not bucket.startswith("s3://"):
        problems.append(Problem("expected s3://BUCKET[/PREFIX]", field="compute.aws.bucket"))
    if problems:
        raise RecipeInputError(problems)
    return AwsSettings(section=aws, region=aws.region, role=role, bucket=bucket.rstrip("/"))  # type: ignore[union-attr,arg-type]


def wandb_reference(aws: Any) -> str | None:
    """Where the job's role reads the W&B key (training_scripts.secrets)."""
    return f"aws-secretsmanager:{aws.wandb_secret}" if aws.wandb_secret else None
