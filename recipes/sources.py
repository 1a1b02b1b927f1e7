"""Data files named by URI, fetched to a local path for checking.

Each scheme is read through its cloud's own SDK, so credentials and endpoints
come from the usual environment:
- s3:// with boto3 (the `aws` extra); AWS_ENDPOINT_URL is honoured.
- gs:// with google-cloud-storage (the `gcp` extra); Application Default
  Credentials, STORAGE_EMULATOR_HOST is honoured.
- azureml:// with azure-ai-ml (the `azure` extra): the datastore is resolved in
  the workspace, then the blob is read with the datastore's credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.base import ProviderError
from recipes.errors import Problem, RecipeInputError


def local_copy(
    location: str, directory: Path, s3_client: Any = None, azure_client: Any = None
) -> Path:
    """A local path holding the file at `location` (the path itself when it is local)."""
    if location.startswith("s3://"):
        return _from_s3(location, directory, s3_client)
    if location.startswith("gs://"):
        return _from_gcs(location, directory)
    if location.startswith("azureml://"):
        from recipes.azureml_uri import download

        return download(location, directory, azure_client)
    if "://" in location:
        scheme = location.split("://")[0]
        raise RecipeInputError(
            Problem(
                f"{scheme}:// is not a data source",
                file=location,
                hint="use a local path, s3://, gs:// or azureml://",
            )
        )
    return Path(location)


def _from_s3(location: str, directory: Path, client: Any) -> Path:
    bucket, _, key = location[len("s3://") :].partition("/")
    if not bucket or not key:
        raise RecipeInputError(Problem("expected s3://BUCKET/KEY", file=location))
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise RecipeInputError(
            Problem("reading s3:// needs pip install '.[aws]'", file=location)
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
            raise RecipeInputError(Problem("no such object", file=location)) from None
        raise ProviderError(f"S3 refused {location}: {code or exc}") from None
    return target


def _from_gcs(location: str, directory: Path) -> Path:
    bucket, _, key = location[len("gs://") :].partition("/")
    if not bucket or not key:
        raise RecipeInputError(Problem("expected gs://BUCKET/OBJECT", file=location))
    try:
        import google.auth.exceptions
        from google.api_core import exceptions
        from google.cloud import storage
    except ImportError:
        raise RecipeInputError(
            Problem("reading gs:// needs pip install '.[gcp]'", file=location)
        ) from None
    target = directory / Path(key).name
    try:
        client = storage.Client(project=None)
        client.bucket(bucket).blob(key).download_to_filename(str(target))
    except google.auth.exceptions.DefaultCredentialsError:
        raise ProviderError(
            "no Google Cloud credentials found (run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS)"
        ) from None
    except exceptions.NotFound:
        target.unlink(missing_ok=True)
        raise RecipeInputError(Problem("no such object", file=location)) from None
    except exceptions.GoogleAPICallError as exc:
        target.unlink(missing_ok=True)
        raise ProviderError(f"Cloud Storage refused {location}: {exc.code} {exc.message}") from None
    return target
