"""Data files named by URI, fetched to a local path for checking.

s3:// is read with boto3 (the `aws` extra), which honours the usual AWS
environment, AWS_ENDPOINT_URL included. gs:// and azureml:// arrive with the
Vertex AI and Azure ML providers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.base import ProviderError
from recipes.errors import RecipeInputError


def local_copy(location: str, directory: Path, s3_client: Any = None) -> Path:
    """A local path holding the file at `location` (the path itself when it is local)."""
    if location.startswith("s3://"):
        return _from_s3(location, directory, s3_client)
    if "://" in location:
        scheme = location.split("://")[0]
        raise RecipeInputError(
            f"FILE: {location}: {scheme}:// data is not readable here yet (it arrives with the "
            "Vertex AI and Azure ML providers); check a local copy"
        )
    return Path(location)


def _from_s3(location: str, directory: Path, client: Any) -> Path:
    bucket, _, key = location[len("s3://") :].partition("/")
    if not bucket or not key:
        raise RecipeInputError(f"FILE: {location}: expected s3://BUCKET/KEY")
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise RecipeInputError(
            f"FILE: {location}: reading s3:// needs pip install '.[aws]'"
        ) from None
    client = client or boto3.client("s3")
    target = directory / Path(key).name
    try:
        client.download_file(bucket, key, str(target))
    except botocore.exceptions.NoCredentialsError:
        raise ProviderError(
            "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        ) from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise RecipeInputError(f"FILE: {location}: no such object") from None
        raise ProviderError(f"S3 refused {location}: {code or exc}") from None
    return target
