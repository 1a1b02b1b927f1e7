"""S3: the uploads a run's plan lists, and reading s3:// data files for `recipe data check`."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from providers.aws import sdk
from providers.base import Plan
from providers.staging import fetch_file, unless_missing
from recipes.errors import Problem, RecipeInputError
from recipes.tags import S3_OBJECT_MAX_TAGS


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class S3Storage:
    """The submit pipeline's Storage on S3; the run's tags go on each object."""

    where = "S3, tagged with this run's tags"

    def __init__(self, s3: Any):
        self.s3 = s3

    @classmethod
    def for_plan(cls, clients: sdk.Clients, plan: Plan) -> S3Storage:
        return cls(clients.get("s3", plan.compute["region"]))

    def exists(self, uri: str, sha256: str) -> bool:
        bucket, key = split_s3(uri)
        head = unless_missing(
            lambda: sdk.call(lambda: self.s3.head_object(Bucket=bucket, Key=key), "HeadObject")
        )
        return head is not None and head.get("Metadata", {}).get("sha256") == sha256

    def put(self, body: dict[str, Any], data: bytes) -> None:
        uri = body["uri"]
        bucket, key = split_s3(uri)
        extra: dict[str, Any] = {"Tagging": body["Tagging"]}
        if body.get("sha256"):
            extra["Metadata"] = {"sha256": body["sha256"]}
        sdk.call(
            lambda: self.s3.put_object(Bucket=bucket, Key=key, Body=data, **extra), f"upload {uri}"
        )

    def delete(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        sdk.call(lambda: self.s3.delete_object(Bucket=bucket, Key=key), f"delete {uri}")


def object_tagging(tags: dict[str, str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """PutObject's Tagging (URL query encoded, botocore's s3 model) with at most the 10 tags
    S3 allows per object: the recipe's own tags first (cost allocation), then the run's."""
    kept = dict(list(tags.items())[:S3_OBJECT_MAX_TAGS])
    dropped = [key for key in tags if key not in kept]
    notes = ()
    if dropped:
        notes = (
            f"S3 objects carry at most {S3_OBJECT_MAX_TAGS} tags: uploads omit "
            + ", ".join(dropped)
            + " (the training job carries every tag)",
        )
    return {"Tagging": urllib.parse.urlencode(kept)}, notes


def download(location: str, directory: Path, client: Any = None) -> Path:
    """A local copy of s3://BUCKET/KEY (the usual credential chain; AWS_ENDPOINT_URL honoured)."""
    bucket, key = split_s3(location)
    if not bucket or not key:
        raise RecipeInputError(Problem("expected s3://BUCKET/KEY", file=location))
    client = client or sdk.boto3().client("s3")
    target = directory / Path(key).name
    fetch = lambda: sdk.call(  # noqa: E731
        lambda: client.download_file(bucket, key, str(target)), f"read {location}"
    )
    return fetch_file(location, target, fetch)
