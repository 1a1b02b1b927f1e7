"""Cloud Storage: the uploads a run's plan lists, and reading gs:// data files for
`recipe data check` (Application Default Credentials; STORAGE_EMULATOR_HOST honoured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.gcp import sdk
from providers.packaging import ARCHIVE_NAME
from providers.staging import fetch_file
from recipes.errors import Problem, RecipeInputError


def split_gs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://") :].partition("/")
    return bucket, name


class GcsStorage:
    """The submit pipeline's Storage on Cloud Storage. Objects have no labels: the run's
    tags go in as object metadata."""

    where = "Cloud Storage, this run's tags in the object metadata"

    def __init__(self, client: Any):
        self.client = client

    def exists(self, uri: str, sha256: str) -> bool:
        bucket_name, name = split_gs(uri)
        bucket = self.client.bucket(bucket_name)
        current = sdk.call(lambda: bucket.get_blob(name, retry=sdk.storage_retry()), f"read {uri}")
        return current is not None and (current.metadata or {}).get("sha256") == sha256

    def put(self, body: dict[str, Any], data: bytes) -> None:
        uri = body["uri"]
        bucket_name, name = split_gs(uri)
        blob = self.client.bucket(bucket_name).blob(name)
        sha256 = body.get("sha256")
        blob.metadata = {**body["metadata"], **({"sha256": sha256} if sha256 else {})}
        if name.endswith(ARCHIVE_NAME):
            content_type = "application/gzip"
        elif name.endswith(".json"):
            content_type = "application/json"
        else:
            content_type = "application/jsonl"
        # The same bytes under the same name: repeating an upload is safe, so retry it.
        sdk.call(
            lambda: blob.upload_from_string(
                data, content_type=content_type, retry=sdk.storage_retry()
            ),
            f"upload {uri}",
        )

    def delete(self, uri: str) -> None:
        bucket_name, name = split_gs(uri)
        sdk.call(lambda: self.client.bucket(bucket_name).blob(name).delete(), f"delete {uri}")


def object_metadata(tags: dict[str, str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Cloud Storage objects have no labels: the run's tags go in as custom metadata."""
    return {"metadata": dict(tags)}, ()


def download(location: str, directory: Path, client: Any = None) -> Path:
    """A local copy of gs://BUCKET/OBJECT."""
    bucket, name = split_gs(location)
    if not bucket or not name:
        raise RecipeInputError(Problem("expected gs://BUCKET/OBJECT", file=location))
    client = client or sdk.Clients().storage(project=None)
    target = directory / Path(name).name
    blob = client.bucket(bucket).blob(name)
    fetch = lambda: sdk.call(  # noqa: E731
        lambda: blob.download_to_filename(str(target)), f"read {location}"
    )
    return fetch_file(location, target, fetch)
