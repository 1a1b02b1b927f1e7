"""The image catalog (providers/images.yaml): which training image a plan uses, what is
in it, and whether it can run the training scripts.

A plan refuses a catalog image below the scripts' requirements (Python, torch), notes
one past its end of patch, and notes that an image the user names (compute.aws.image,
compute.azure.environment, compute.gcp.image) must meet them, since nothing here can
look inside it.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from recipes.errors import Problem, RecipeInputError

CATALOG = Path(__file__).with_name("images.yaml")


@dataclass(frozen=True)
class Image:
    cloud: str
    kind: str  # the kind of job: training-job, hyperpod, command-job, custom-job
    device: str  # gpu or cpu
    uri: str  # may hold {account}, {region}, {domain}
    python: str
    torch: str
    cuda: str | None
    end_of_patch: datetime.date | None
    source: str
    checked: datetime.date
    server: str | None = None  # serving images: the engine inside, e.g. "vllm 0.10.0"


@dataclass(frozen=True)
class Requirements:
    python: str
    torch: str


@dataclass(frozen=True)
class Catalog:
    version: str
    requirements: Requirements
    images: tuple[Image, ...]
    endpoint_images: tuple[Image, ...] = ()


@functools.cache
def load(path: Path = CATALOG) -> Catalog:
    data = yaml.safe_load(path.read_text())
    return Catalog(
        version=str(data["version"]),
        requirements=Requirements(**data["requirements"]),
        images=tuple(Image(**entry) for entry in data["images"]),
        endpoint_images=tuple(Image(**entry) for entry in data.get("endpoint_images") or ()),
    )


def default(cloud: str, kind: str, gpu: bool) -> Image:
    device = "gpu" if gpu else "cpu"
    for image in load().images:
        if (image.cloud, image.kind, image.device) == (cloud, kind, device):
            return image
    raise LookupError(f"images.yaml has no {device} image for {cloud} {kind}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def check(image: Image, field: str, today: datetime.date | None = None) -> tuple[str, ...]:
    """Refuse an image that cannot run the scripts; the notes a plan shows about it."""
    needs = load().requirements
    short = []
    if _version(image.python) < _version(needs.python):
        short.append(f"Python {image.python} < {needs.python}")
    if _version(image.torch) < _version(needs.torch):
        short.append(f"torch {image.torch} < {needs.torch}")
    if short:
        raise RecipeInputError(
            Problem(
                f"image {image.uri} cannot run the training scripts: {', '.join(short)} "
                "(transformers>=5 needs them)",
                field=field,
                hint=f"see {image.source}",
            )
        )
    today = today or datetime.date.today()
    if image.end_of_patch and image.end_of_patch < today:
        return (
            f"image {image.uri} is past its end of patch ({image.end_of_patch}): no more "
            "security fixes; update providers/images.yaml",
        )
    return ()


def is_catalog_image(uri: str) -> bool:
    """Is `uri` one of the catalog's images (for any region or account)?"""
    return any(uri.endswith(image.uri.rsplit("/", 1)[-1]) for image in load().images)


def custom_note(field: str, uri: str) -> str:
    needs = load().requirements
    return (
        f"{field} {uri} is not in the image catalog: it must have Python >= {needs.python} "
        f"and torch >= {needs.torch} (what transformers>=5 needs), or the job stops at start"
    )


def choose(
    cloud: str, kind: str, gpu: bool, explicit: str | None, field: str, **fill: str
) -> tuple[str, tuple[str, ...]]:
    """The image URI for a job, and what the plan notes about it."""
    if explicit:
        return explicit, (custom_note(field, explicit),)
    image = default(cloud, kind, gpu)
    return image.uri.format(**fill), check(image, field)


def serving(
    cloud: str, field: str, today: datetime.date | None = None
) -> tuple[Image, tuple[str, ...]]:
    """The serving image of a cloud's endpoints, and what a plan notes about it."""
    for image in load().endpoint_images:
        if image.cloud == cloud:
            today = today or datetime.date.today()
            notes: tuple[str, ...] = ()
            if image.end_of_patch and image.end_of_patch < today:
                notes = (
                    f"serving image {image.uri} is past its end of patch ({image.end_of_patch})",
                )
            return image, notes
    raise LookupError(f"images.yaml has no serving image for {cloud} ({field})")
