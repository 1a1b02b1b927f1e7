"""The only module that imports Google Cloud's SDKs (google-cloud-aiplatform, -storage,
google-auth, google-api-core, requests through google-auth's transport).

Imports are lazy, so planning needs no login; a missing extra is one typed error.
Every SDK exception leaves this module as a ProviderError with a kind, from the
HTTP status the SDK's error classes carry (google.api_core.exceptions), never
from message text.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

from recipes.errors import ErrorKind, ProviderError, kind_for_status, missing_extra

T = TypeVar("T")
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# For tests and emulators: an http:// endpoint here is called without credentials.
VERTEX_ENDPOINT_ENV = "RECIPE_GCP_VERTEX_ENDPOINT"
NO_CREDENTIALS = (
    "no Google Cloud credentials found (run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file)"
)
# Backoff for 429 and 5xx answers; module-level so tests can shorten it.
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
RETRY_DEADLINE_S = 120.0


def module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise missing_extra("gcp", "google-cloud-aiplatform and google-cloud-storage") from None


class Clients:
    """Vertex AI, Cloud Storage and an HTTP session, built on first use from Application
    Default Credentials (so plan() never needs a login); tests inject ones aimed at fakes."""

    def __init__(self, jobs: Any = None, storage: Any = None, session: Any = None):
        self._jobs = {"*": jobs} if jobs is not None else {}
        self._storage = storage
        self._session = session
        self._credentials: Any = None

    def jobs(self, region: str) -> Any:
        if "*" in self._jobs:
            return self._jobs["*"]
        if region not in self._jobs:
            aiplatform_v1 = module("google.cloud.aiplatform_v1")
            endpoint = os.environ.get(VERTEX_ENDPOINT_ENV) or f"{region}-aiplatform.googleapis.com"
            # REST, like the tests: the same transport, retries and error mapping.
            self._jobs[region] = aiplatform_v1.JobServiceClient(
                credentials=self.credentials(endpoint),
                transport="rest",
                client_options={"api_endpoint": endpoint},
            )
        return self._jobs[region]

    def storage(self, project: str | None) -> Any:
        if self._storage is None:
            storage = module("google.cloud.storage")
            emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
            self._storage = storage.Client(project=project, credentials=self.credentials(emulator))
        return self._storage

    def session(self, endpoint: str) -> Any:
        if self._session is None:
            transport = module("google.auth.transport.requests")
            self._session = transport.AuthorizedSession(self.credentials(endpoint))
        return self._session

    def credentials(self, endpoint: str = "") -> Any:
        if endpoint.startswith("http://"):  # a local emulator or fake
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        if self._credentials is None:
            self._credentials = default_credentials()
        return self._credentials


def storage_retry() -> Any:
    """google-cloud-storage's own retry policy (backoff on 429, 5xx and connection errors)."""
    return module("google.cloud.storage.retry").DEFAULT_RETRY


def custom_job_message(body: dict[str, Any]) -> Any:
    """The planned JSON as the SDK's message; unknown fields fail instead of vanishing."""
    aiplatform_v1 = module("google.cloud.aiplatform_v1")
    return aiplatform_v1.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)


def default_credentials() -> Any:
    google_auth = module("google.auth")
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google_auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError:
        raise ProviderError(NO_CREDENTIALS, ErrorKind.AUTH) from None
    return credentials


def _retry(*names: str) -> Any:
    from google.api_core import exceptions as gex
    from google.api_core import retry

    kinds = tuple(getattr(gex, n) for n in names)
    return retry.Retry(
        predicate=retry.if_exception_type(*kinds),
        initial=RETRY_INITIAL_S,
        maximum=RETRY_MAX_S,
        multiplier=2.0,
        timeout=RETRY_DEADLINE_S,
    )


def read_retry() -> Any:
    """Reads (and cancel, which is idempotent) are safe to repeat on throttling and 5xx."""
    return _retry(
        "TooManyRequests",
        "ResourceExhausted",
        "InternalServerError",
        "BadGateway",
        "ServiceUnavailable",
        "GatewayTimeout",
    )


def create_retry() -> Any:
    # Only answers that mean "not taken": a 500 after the job was created would
    # launch it twice, since Vertex has no request id for CreateCustomJob.
    return _retry("TooManyRequests", "ResourceExhausted", "ServiceUnavailable")


def call(fn: Callable[[], T], what: str) -> T:
    """Run one Google Cloud call; credentials and API refusals become one clear line (exit 3)."""
    import requests
    from google.api_core import exceptions as gex
    from google.auth import exceptions as aex

    try:
        return fn()
    except ProviderError:
        raise
    except gex.RetryError as exc:
        cause = exc.cause if isinstance(exc.cause, gex.GoogleAPICallError) else None
        if cause is not None:
            raise provider_error(cause, what) from None
        raise ProviderError(
            f"{what} failed: gave up retrying ({exc})", ErrorKind.THROTTLED
        ) from None
    except gex.GoogleAPICallError as exc:
        raise provider_error(exc, what) from None
    except aex.DefaultCredentialsError:
        raise ProviderError(NO_CREDENTIALS, ErrorKind.AUTH) from None
    except aex.RefreshError as exc:
        raise ProviderError(
            f"Google Cloud rejected the credentials ({_first_line(exc)}); run "
            "`gcloud auth application-default login`",
            ErrorKind.AUTH,
        ) from None
    except (aex.TransportError, requests.RequestException, ConnectionError) as exc:
        raise ProviderError(
            f"{what}: cannot reach Google Cloud ({_first_line(exc)})", ErrorKind.UNREACHABLE
        ) from None


def provider_error(exc: Any, what: str) -> ProviderError:
    code = exc.code or "?"  # the HTTP status, on every api_core error class
    status, message = _error_details(exc)
    line = f"{what} failed: {code} {status}: {message}"
    if code == 401:
        line += " (run `gcloud auth application-default login`)"
    elif code == 403:
        line += " (check the project, the Vertex AI API and the caller's roles)"
    return ProviderError(line, kind_for_status(code if isinstance(code, int) else None))


def _error_details(exc: Any) -> tuple[str, str]:
    """The API's own status name and message, without the request URL the SDK prepends."""
    status, message = "", re.sub(r"^[A-Z]+ \S+: ", "", str(exc.message or ""))
    response = getattr(exc, "response", None)
    try:
        error = response.json()["error"]  # type: ignore[union-attr]
        status, message = error.get("status", ""), error.get("message", message)
    except Exception:  # not a JSON error body: keep what the SDK parsed
        pass
    status = status or re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()
    return status, _first_line(message) or "(no message)"


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else ""


def post_json(session: Any, url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
    """POST through an authorized session, with the SDK's error classes and backoff."""
    from google.api_core import exceptions as gex

    def once() -> dict[str, Any]:
        response = session.post(url, json=body, timeout=60)
        if response.status_code >= 400:
            raise gex.from_http_response(response)
        return response.json()

    return call(lambda: read_retry()(once)(), what)


# --- Vertex AI endpoints (providers/gcp/endpoint.py) ---------------------------------------

# Long-running operations (CreateEndpoint, UploadModel, DeployModel, UndeployModel, the
# deletes): polled like google.api_core's DEFAULT_POLLING, but DeployModel waits for the
# replicas to pass their health checks, which can take as long as the container's
# deploymentTimeout (at most 2 h: aiplatform_v1 ModelContainerSpec.deployment_timeout).
LRO_INITIAL_S = 1.0
LRO_MAX_S = 30.0
LRO_TIMEOUT_S = 7200.0


class ServingClients(Clients):
    """Vertex AI's EndpointService and ModelService clients (REST, like the job client) and
    an authorized session for rawPredict; tests inject ones aimed at fakes."""

    def __init__(self, endpoints: Any = None, models: Any = None, session: Any = None):
        super().__init__(session=session)
        self._services: dict[tuple[str, str], Any] = {}
        if endpoints is not None:
            self._services["EndpointServiceClient", "*"] = endpoints
        if models is not None:
            self._services["ModelServiceClient", "*"] = models

    def api_endpoint(self, region: str) -> str:
        return os.environ.get(VERTEX_ENDPOINT_ENV) or f"{region}-aiplatform.googleapis.com"

    def _service(self, kind: str, region: str) -> Any:
        for key in ((kind, "*"), (kind, region)):
            if key in self._services:
                return self._services[key]
        aiplatform_v1 = module("google.cloud.aiplatform_v1")
        endpoint = self.api_endpoint(region)
        self._services[kind, region] = getattr(aiplatform_v1, kind)(
            credentials=self.credentials(endpoint),
            transport="rest",
            client_options={"api_endpoint": endpoint},
        )
        return self._services[kind, region]

    def endpoints(self, region: str) -> Any:
        return self._service("EndpointServiceClient", region)

    def models(self, region: str) -> Any:
        return self._service("ModelServiceClient", region)


def request_message(kind: str, body: dict[str, Any]) -> Any:
    """A planned request body as aiplatform_v1's message `kind` (e.g. "DeployModelRequest");
    unknown fields fail instead of vanishing."""
    aiplatform_v1 = module("google.cloud.aiplatform_v1")
    return getattr(aiplatform_v1, kind).from_json(json.dumps(body), ignore_unknown_fields=False)


def find(fn: Callable[[], T], what: str) -> T | None:
    """A Get call whose 404 means "not there" (None) rather than a failure."""
    from google.api_core import exceptions as gex

    def once() -> T | None:
        try:
            return fn()
        except gex.NotFound:
            return None

    return call(once, what)


def wait(operation: Any, what: str) -> Any:
    """The result of a long-running operation; its error (a google.rpc.Status) becomes the
    same one-line ProviderError as a refused call."""
    import concurrent.futures

    from google.api_core import retry
    from google.api_core.future import polling

    poll = retry.Retry(
        predicate=polling.POLLING_PREDICATE,
        initial=LRO_INITIAL_S,
        maximum=LRO_MAX_S,
        multiplier=1.5,
        timeout=LRO_TIMEOUT_S,
    )
    from google.api_core import exceptions as gex

    def result() -> Any:
        try:
            return operation.result(polling=poll, retry=read_retry())
        except gex.ResourceExhausted as exc:
            # An accepted operation that ends RESOURCE_EXHAUSTED ran out of a quota (e.g.
            # serving GPUs per region), not of request rate: retrying will not help.
            raise ProviderError(str(provider_error(exc, what)), ErrorKind.QUOTA) from None

    try:
        return call(result, what)
    except concurrent.futures.TimeoutError:
        raise ProviderError(
            f"{what}: still running after {LRO_TIMEOUT_S:.0f} s (operation "
            f"{operation.operation.name}); check it in the console",
            ErrorKind.API,
        ) from None


def raw_predict(session: Any, url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
    """POST a JSON body to an endpoint's :rawPredict, as google-cloud-aiplatform's own
    Endpoint.raw_predict does (an AuthorizedSession, the body as is). Retried only on
    answers that mean "not taken" (429, 503): a generation may already have been billed."""
    return raw_predict_served(session, url, body, what)[0]


def raw_predict_served(
    session: Any, url: str, body: dict[str, Any], what: str
) -> tuple[dict[str, Any], str]:
    """raw_predict, with the id of the DeployedModel that answered: rawPredict's response
    header X-Vertex-AI-Deployed-Model-Id (aiplatform_v1 PredictionServiceClient.raw_predict
    docstring: "ID of the Endpoint's DeployedModel that served this prediction")."""
    from google.api_core import exceptions as gex

    def once() -> tuple[dict[str, Any], str]:
        response = session.post(
            url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=300
        )
        if response.status_code >= 400:
            raise gex.from_http_response(response)
        return response.json(), response.headers.get("X-Vertex-AI-Deployed-Model-Id", "")

    return call(lambda: create_retry()(once)(), what)


# --- Cloud Monitoring (providers/gcp/endpoint.py: a release's traffic) ---------------------

MONITORING_ENDPOINT = "https://monitoring.googleapis.com"


def get_pages(session: Any, url: str, params: dict[str, str], key: str, what: str) -> list[Any]:
    """Every item under `key` of a paged REST list (nextPageToken / pageToken), GET through an
    authorized session with the read backoff; the API's error answers as ProviderErrors."""
    from google.api_core import exceptions as gex

    items: list[Any] = []
    token = ""

    def once() -> dict[str, Any]:
        query = {**params, **({"pageToken": token} if token else {})}
        response = session.get(url, params=query, timeout=60)
        if response.status_code >= 400:
            raise gex.from_http_response(response)
        return response.json()

    while True:
        page = call(lambda: read_retry()(once)(), what)
        items += page.get(key, [])
        token = page.get("nextPageToken", "")
        if not token:
            return items


# --- Cloud Billing export (providers/gcp/billing.py: `recipe cost report`) -----------------

BIGQUERY_PAGE_SIZE = 10000  # rows per jobs.getQueryResults page
# BigQuery's own roles for reading the export: the job runs in the table's project.
BIGQUERY_ROLES_HINT = (
    "the caller needs roles/bigquery.jobUser on the project and roles/bigquery.dataViewer "
    "on the billing export dataset"
)


def bigquery_client(project: str, credentials: Any = None) -> Any:
    """google-cloud-bigquery's Client for `project` (Application Default Credentials)."""
    bigquery = module("google.cloud.bigquery")
    return bigquery.Client(project=project, credentials=credentials or default_credentials())


def bigquery_retry() -> Any:
    """google-cloud-bigquery's DEFAULT_RETRY (retries `rateLimitExceeded`, `backendError`,
    429 and 5xx: google/cloud/bigquery/retry.py), with this module's backoff so tests can
    shorten it."""
    retry = module("google.cloud.bigquery.retry")
    return retry.DEFAULT_RETRY.with_delay(
        initial=RETRY_INITIAL_S, maximum=RETRY_MAX_S, multiplier=2.0
    ).with_timeout(RETRY_DEADLINE_S)


def bigquery_rows(
    client: Any, sql: str, parameters: list[tuple[str, str, Any]], what: str
) -> list[dict[str, Any]]:
    """Every row of a parameterized GoogleSQL query, paged (jobs.query, then
    jobs.getQueryResults with pageToken), as dicts. `parameters` are (name, BigQuery type,
    value): values travel as query parameters, never in the SQL text."""
    bigquery = module("google.cloud.bigquery")
    from google.api_core import exceptions as gex

    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter(n, t, v) for n, t, v in parameters],
        use_legacy_sql=False,
    )

    def run() -> list[dict[str, Any]]:
        try:
            result = client.query_and_wait(
                sql,
                job_config=config,
                retry=bigquery_retry(),
                page_size=BIGQUERY_PAGE_SIZE,
            )
            return [dict(row.items()) for row in result]
        except (gex.Forbidden, gex.NotFound) as exc:
            error = provider_error(exc, what)
            raise ProviderError(
                f"{str(error).split(' (check', 1)[0]} ({BIGQUERY_ROLES_HINT})", error.kind
            ) from None

    return call(run, what)


# --- account bootstrap (providers/gcp/infra.py: `recipe infra check`) ----------------------

# REST services `check` reads through an authorized session (no client library of theirs is
# a dependency): IAM service accounts, Resource Manager IAM policies, Cloud KMS keys and
# Cloud Billing budgets (billingbudgets v1 budgets.list).
INFRA_ENDPOINTS = {
    "iam": "https://iam.googleapis.com",
    "resourcemanager": "https://cloudresourcemanager.googleapis.com",
    "kms": "https://cloudkms.googleapis.com",
    "budgets": "https://billingbudgets.googleapis.com",
}


def get_json_or_none(
    session: Any,
    url: str,
    what: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """GET a REST resource through an authorized session; 404 means "not there" (None)."""
    from google.api_core import exceptions as gex

    def once() -> dict[str, Any] | None:
        response = session.get(url, params=params or {}, headers=headers or {}, timeout=60)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise gex.from_http_response(response)
        return response.json()

    return call(lambda: read_retry()(once)(), what)


def get_all_pages(
    session: Any, url: str, key: str, what: str, headers: dict[str, str] | None = None
) -> list[Any]:
    """Every item under `key` of a paged REST list, with request headers (the Budgets API
    wants a quota project, x-goog-user-project, when called with user credentials)."""
    items: list[Any] = []
    token = ""
    while True:
        params = {"pageToken": token} if token else {}
        page = get_json_or_none(session, url, what, headers, params) or {}
        items += page.get(key, [])
        token = page.get("nextPageToken", "")
        if not token:
            return items


def storage_bucket_or_none(client: Any, name: str, what: str) -> Any:
    """google-cloud-storage's Bucket with its metadata loaded (buckets.get), or None."""
    return find(lambda: client.get_bucket(name, retry=storage_retry()), what)


def storage_bucket_bindings(bucket: Any, what: str) -> list[dict[str, Any]]:
    """The bucket's IAM bindings (buckets.getIamPolicy, policy version 3)."""
    policy = call(
        lambda: bucket.get_iam_policy(requested_policy_version=3, retry=storage_retry()), what
    )
    return [dict(b) for b in policy.bindings]


def bigquery_dataset_or_none(client: Any, dataset: str, what: str) -> Any:
    """google-cloud-bigquery's Dataset `project.dataset_id` (datasets.get), or None."""
    return find(lambda: client.get_dataset(dataset, retry=bigquery_retry()), what)


def bigquery_table_ids(client: Any, dataset: str, what: str) -> list[str]:
    """The ids of every table in a dataset (tables.list, paged by the client)."""
    return call(
        lambda: [t.table_id for t in client.list_tables(dataset, retry=bigquery_retry())], what
    )
