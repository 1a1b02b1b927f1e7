"""The whole recipe: one fine-tune, from base model to endpoint."""

from __future__ import annotations

from pydantic import Field

from recipes.schema.common import Section, TagValue
from recipes.schema.compute import ComputeSpec
from recipes.schema.data import DataSpec
from recipes.schema.deploy import DeploySpec
from recipes.schema.evaluation import EvalSpec
from recipes.schema.method import LoraSpec, Method
from recipes.schema.model import ModelSpec
from recipes.schema.tracking import TrackingSpec
from recipes.schema.training import TrainingSpec


class BudgetSpec(Section):
    max_usd: float = Field(gt=0, description="Refuse to launch when the estimate exceeds this.")
    max_monthly_usd: float | None = Field(
        default=None,
        gt=0,
        description="Refuse to deploy an endpoint whose monthly cost at max_replicas exceeds this.",
    )


class Recipe(Section):
    """One fine-tune: base model, data, method, hyperparameters, hardware, cost and serving."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,47}$",
        description="Lowercase letters, digits and dashes (≤ 48); names runs and jobs.",
    )
    description: str | None = Field(default=None, description="Free text for humans.")
    model: ModelSpec = Field(description="The base model.")
    data: DataSpec = Field(description="Training and validation data.")
    method: Method = Field(
        default_factory=lambda: LoraSpec(kind="lora"),
        description="lora, qlora or full.",
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Hyperparameters.")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="Evaluation and gates.")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="Experiment tracking.")
    compute: ComputeSpec = Field(default_factory=ComputeSpec, description="Hardware.")
    tags: dict[str, TagValue] = Field(
        default_factory=dict, description="Cost and ownership tags put on everything created."
    )
    budget: BudgetSpec | None = Field(default=None, description="Spending limit per run.")
    deploy: DeploySpec | None = Field(default=None, description="Serving and promotion.")
