"""One place that maps each platform's conventions onto one set of paths.

SageMaker, Azure ML and Vertex AI each say differently where inputs are mounted
and where outputs and checkpoints must be written; the rest of the training code
only ever sees `Paths`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    platform: str  # local | sagemaker | azureml | vertex
    output_dir: Path  # reports, metrics, logs
    model_dir: Path  # the adapter or model the job produces
    checkpoint_dir: Path  # periodic checkpoints (synced to cloud storage where the platform does)
    channels: Mapping[str, Path]  # input name -> mounted directory, where the platform mounts


def detect(env: Mapping[str, str]) -> str:
    if "SM_MODEL_DIR" in env or "SM_TRAINING_ENV" in env:
        return "sagemaker"
    if "AIP_MODEL_DIR" in env or "CLOUD_ML_JOB_ID" in env:
        return "vertex"
    if "AZUREML_RUN_ID" in env or "AZUREML_CR_EXECUTION_WORKING_DIR_PATH" in env:
        return "azureml"
    return "local"


def resolve(output_dir: str | None, env: Mapping[str, str] | None = None) -> Paths:
    env = os.environ if env is None else env
    platform = detect(env)
    if platform == "sagemaker":
        channels = {
            key[len("SM_CHANNEL_") :].lower(): Path(value)
            for key, value in env.items()
            if key.startswith("SM_CHANNEL_")
        }
        return Paths(
            platform=platform,
            output_dir=Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")),
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            checkpoint_dir=Path("/opt/ml/checkpoints"),  # synced to CheckpointConfig.S3Uri
            channels=channels,
        )
    if platform == "vertex":
        model_dir = gcs_to_fuse(env.get("AIP_MODEL_DIR", output_dir or "/tmp/model"))
        checkpoints = env.get("AIP_CHECKPOINT_DIR")
        return Paths(
            platform=platform,
            output_dir=model_dir.parent if model_dir.name == "model" else model_dir,
            model_dir=model_dir,
            checkpoint_dir=gcs_to_fuse(checkpoints) if checkpoints else model_dir / "checkpoints",
            channels={},
        )
    # Azure ML mounts outputs and passes their paths as arguments, like a local run, and
    # names each mounted input AZURE_ML_INPUT_<name>; RECIPE_CHANNEL_<NAME> names inputs
    # fetched by a launcher (e.g. HyperPod pods).
    root = Path(output_dir or ".").resolve()
    return Paths(
        platform=platform,
        output_dir=root,
        model_dir=root,
        checkpoint_dir=root / "checkpoints",
        channels=_named_inputs(env),
    )


def _named_inputs(env: Mapping[str, str]) -> dict[str, Path]:
    inputs = {}
    for prefix in ("AZURE_ML_INPUT_", "RECIPE_CHANNEL_"):
        for key, value in env.items():
            if key.startswith(prefix):
                inputs[key[len(prefix) :].lower()] = Path(value)
    return inputs


def gcs_to_fuse(location: str) -> Path:
    """Vertex mounts Cloud Storage at /gcs/BUCKET/...; gs:// URIs are read through it."""
    if location.startswith("gs://"):
        return Path("/gcs") / location[len("gs://") :]
    return Path(location)


def data_path(name: str, location: str, paths: Paths) -> Path:
    """Where an input (recipe value `location`, channel `name`) is readable inside the job."""
    channel = paths.channels.get(name)
    if channel is not None:
        if channel.is_file():
            return channel
        candidate = channel / Path(location).name
        if candidate.exists():
            return candidate
        files = sorted(channel.glob("*.jsonl"))
        if len(files) == 1:
            return files[0]
        return candidate
    if location.startswith("gs://"):
        return gcs_to_fuse(location)
    return Path(location)
