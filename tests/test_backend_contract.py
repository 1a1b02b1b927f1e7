"""The contract every job backend keeps, run against each one through its real SDK.

One fixture per backend yields a `Harness`: the backend with its SDK clients pointed at
a fake of the service (moto, tests/fakes/), and the few handles the contract needs to
drive that fake. Every test here runs once per backend; an item that does not apply to
a backend (local runs have no credentials, no uploads, never relaunch) is skipped with
the reason its harness gives.

Adding a backend is adding one `@backend` fixture below.

The contract:
- plan is pure: no socket, no file, equal twice, no secret value in it;
- submit sends exactly the planned create body, once; a second submit finds the job;
- every planned upload is stored with the run's tags; a new attempt re-uploads only
  its recipe.json (code and data are content-addressed);
- a throttled create (429, 503) is retried, then succeeds;
- a refused create leaves no run-scoped object behind and names what it kept;
- missing credentials: one line on stderr and exit 3 from the CLI, ErrorKind.AUTH inside;
- status maps each of the service's states; an unknown job is ErrorKind.NOT_FOUND;
- cancel stops a running job and leaves a finished one alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from providers.base import (
    ErrorKind,
    JobBackend,
    Plan,
    ProviderError,
    Request,
    RunIdentity,
    RunRef,
    State,
)
from providers.staging import cloud_identity
from recipes.loader import load_recipe
from tests.conftest import CLI, HYPERPOD, MULTINODE, QUICKSTART
from tests.fakes import aws, azure, gcp
from tests.fakes.kubernetes import FakeKubernetes

# Values that must never appear in a plan, whatever the environment holds.
SECRETS = {
    "WANDB_API_KEY": "wandb-value-must-not-travel",
    "HF_TOKEN": "hf-value-must-not-travel",
    "AWS_SECRET_ACCESS_KEY": "aws-value-must-not-travel",
    "AZURE_CLIENT_SECRET": "azure-value-must-not-travel",
    "GOOGLE_APPLICATION_CREDENTIALS": "/keys/gcp-value-must-not-travel.json",
}


@dataclass
class Harness:
    """A backend over a fake of its service, and what the contract needs to drive it.

    Handles left None do not apply to the backend: `not_applicable` says why.
    """

    backend: JobBackend
    plan: Callable[[int], Plan]  # attempt -> the plan of the backend's catalog recipe
    launch: Callable[[int], RunRef]  # attempt -> a job submitted and known to the service
    set_state: Callable[[RunRef, str], None]  # make the service report one of its states
    states: dict[str, State]  # each state of the service -> what status() must say
    running: str  # a state of the service meaning "running"
    finished: str  # a state of the service meaning "ended well"
    stopped: Callable[[RunRef], bool]  # the service was told to stop the job (or it stopped)
    unknown: Callable[[RunRef], RunRef]  # a ref to a job the service does not have
    # clouds
    created: Callable[[], list[Any]] | None = None  # create bodies received, retries included
    create_body: Callable[[Plan], Any] | None = None  # the plan's create body, in that form
    jobs: Callable[[], int] | None = None  # jobs the service holds
    stored: Callable[[], dict[str, tuple[bytes, dict[str, str]]]] | None = (
        None  # URI -> (data, tags)
    )
    uploads: Callable[[], list[str]] | None = None  # paths of the uploads received, in order
    throttle: Callable[[], int] | None = None  # next create attempts throttled; returns how many
    refuse: Callable[[], ErrorKind] | None = None  # next create refused for good; its kind
    without_credentials: Callable[[dict[str, str], str], dict[str, str]] | None = None
    cli_run: list[str] | None = None  # `recipe run` arguments for the backend's recipe
    login_hint: str = ""  # what the missing-credentials line tells the user to do
    bare: Callable[[], JobBackend] | None = None  # the backend with its default clients
    not_applicable: dict[str, str] = field(default_factory=dict)


def need(harness: Harness, item: str) -> None:
    if getattr(harness, item) is None:
        pytest.skip(harness.not_applicable[item])


def cloud_plan(backend: JobBackend, path: Path, overrides: list[str]) -> Callable[[int], Plan]:
    def plan(attempt: int) -> Plan:
        loaded = load_recipe(path, overrides)
        recipe = loaded.resolved()
        return backend.plan(recipe, cloud_identity(recipe.name, loaded.content_hash, attempt))

    return plan


def submitter(harness_plan: Callable[[int], Plan], backend: JobBackend) -> Callable[[int], RunRef]:
    return lambda attempt: backend.submit(harness_plan(attempt)).ref


def fresh_boto3(monkeypatch: pytest.MonkeyPatch, make: Callable[[], JobBackend]) -> JobBackend:
    """A backend whose boto3 clients come from a new default session: the one boto3 keeps
    per process has resolved (and cached) the fake keys already."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return make()


def renamed(ref: RunRef, **ids: str) -> RunRef:
    return RunRef(ref.provider, "nope-1", {**ref.ids, **ids})


# --- one fixture per backend -----------------------------------------------------------------

BACKENDS: list[str] = []


def backend(fn: Callable[..., Iterator[Harness]]) -> Any:
    """Registers a backend fixture: every contract test runs against it."""
    BACKENDS.append(fn.__name__)
    return pytest.fixture(fn)


LOCAL_NOT_APPLICABLE = {
    "created": "a local run is a process, not a create call to a service",
    "stored": "local runs read their files in place: nothing is uploaded",
    "throttle": "nothing throttles a local process",
    "refuse": "nothing refuses a local process",
    "without_credentials": "local runs need no credentials",
}


@backend
def local(home: Path) -> Iterator[Harness]:
    """LocalRuns with its real supervisor; the job is a sleeping process (nothing to train)."""
    from providers.local import runtime as rt
    from providers.local.runs import LocalRuns

    runs = LocalRuns(root=home)
    started: list[Path] = []

    def plan(attempt: int) -> Plan:
        overrides = ["tracking.wandb.project=demo", "tracking.wandb.mode=offline"]
        loaded = load_recipe(QUICKSTART, overrides)
        identity = RunIdentity(
            f"quickstart-contract-{attempt}", "quickstart", loaded.content_hash, attempt
        )
        return runs.plan(loaded.resolved(), identity)

    def launch(attempt: int) -> RunRef:
        planned = plan(attempt)
        sleeper = [[sys.executable, "-c", "import time; time.sleep(120)"]]
        (spawn,) = planned.requests
        planned = replace(planned, requests=(Request(spawn.api, {**spawn.body, "steps": sleeper}),))
        ref = runs.submit(planned).ref
        run_dir = Path(ref.ids["run_dir"])
        started.append(run_dir)
        deadline = time.time() + 30
        while rt.read_json(run_dir / rt.STATE).get("trainer_pid") is None:
            assert time.time() < deadline, "the supervisor did not start the job"
            time.sleep(0.05)
        return ref

    def stopped(ref: RunRef) -> bool:
        pid = rt.read_json(Path(ref.ids["run_dir"]) / rt.STATE)["trainer_pid"]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    yield Harness(
        backend=runs,
        plan=plan,
        launch=launch,
        set_state=lambda ref, state: rt.update_state(Path(ref.ids["run_dir"]), state=state),
        states={s.value: s for s in State},  # state.json holds the common states themselves
        running="running",
        finished="succeeded",
        stopped=stopped,
        unknown=lambda ref: RunRef("local", "nope-1", {"run_dir": str(home / "nope-1")}),
        not_applicable=LOCAL_NOT_APPLICABLE,
    )
    for run_dir in started:  # the supervisors we started, by their process group
        pgid = rt.read_json(run_dir / rt.STATE).get("pgid")
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pgid), signal.SIGKILL)


SAGEMAKER_STATES = {  # TrainingJobStatus/SecondaryStatus
    "InProgress/Starting": State.QUEUED,
    "InProgress/LaunchingMLInstances": State.QUEUED,
    "InProgress/Downloading": State.QUEUED,
    "InProgress/DownloadingTrainingImage": State.QUEUED,
    "InProgress/Training": State.RUNNING,
    "InProgress/Interrupted": State.RUNNING,
    "InProgress/Uploading": State.RUNNING,
    "Stopping/Stopping": State.RUNNING,
    "Completed/Completed": State.SUCCEEDED,
    "Failed/Failed": State.FAILED,
    "Stopped/MaxRuntimeExceeded": State.FAILED,
    "Stopped/MaxWaitTimeExceeded": State.FAILED,
    "Stopped/Stopped": State.CANCELLED,
}


def s3_uploads(fake: aws.BotocoreFake) -> list[str]:
    return [unquote(urlsplit(r.url).path) for r in fake.sent["PutObject"]]


def throttle_sagemaker(fake: aws.BotocoreFake) -> int:
    fake.error("CreateTrainingJob", 400, "ThrottlingException", "Rate exceeded")
    fake.error("CreateTrainingJob", 503, "ServiceUnavailable", "Please try again later")
    return 2


def refuse_sagemaker(fake: aws.BotocoreFake) -> ErrorKind:
    fake.error(
        "CreateTrainingJob",
        400,
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.g5.12xlarge for spot training job usage' "
        "is 0 Instances",
    )
    return ErrorKind.QUOTA


@backend
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """TrainingJobs over moto, with its own default clients (the real retry configuration);
    BotocoreFake answers StopTrainingJob, which moto lacks, and injects throttling."""
    from moto import mock_aws

    from providers.aws.training_job import TrainingJobs

    aws.use_fake_keys(monkeypatch)
    with mock_aws():
        s3 = aws.bucket()
        jobs = TrainingJobs(clients={f"s3:{aws.REGION}": s3})
        sm = jobs.clients.get("sagemaker", aws.REGION)
        fake = aws.BotocoreFake(sm).watch("CreateTrainingJob")
        fake.answer("StopTrainingJob", 200, {}, times=None)
        s3_fake = aws.BotocoreFake(s3).watch("PutObject")
        plan = cloud_plan(jobs, MULTINODE, [])

        def set_state(ref: RunRef, state: str) -> None:
            aws.set_training_job(ref.run_id, *state.split("/"))

        yield Harness(
            backend=jobs,
            plan=plan,
            launch=submitter(plan, jobs),
            set_state=set_state,
            states=SAGEMAKER_STATES,
            running="InProgress/Training",
            finished="Completed/Completed",
            stopped=lambda ref: {"TrainingJobName": ref.run_id} in fake.bodies("StopTrainingJob"),
            unknown=lambda ref: renamed(ref, job_name="nope-1"),
            created=lambda: fake.bodies("CreateTrainingJob"),
            create_body=lambda p: p.requests[-1].body,
            jobs=lambda: len(sm.list_training_jobs()["TrainingJobSummaries"]),
            stored=lambda: aws.stored_objects(s3),
            uploads=lambda: s3_uploads(s3_fake),
            throttle=lambda: throttle_sagemaker(fake),
            refuse=lambda: refuse_sagemaker(fake),
            without_credentials=aws.without_credentials,
            cli_run=[str(MULTINODE), "--provider", "aws"],
            login_hint=aws.NO_CREDENTIALS,
            bare=lambda: fresh_boto3(monkeypatch, TrainingJobs),
        )


HYPERPOD_STATES = {  # the newest true condition of the HyperPodPyTorchJob
    "Created": State.QUEUED,
    "PodsRunning": State.RUNNING,
    "Running": State.RUNNING,
    "Restarting": State.RUNNING,
    "Succeeded": State.SUCCEEDED,
    "Completed": State.SUCCEEDED,
    "Failed": State.FAILED,
}


@backend
def hyperpod(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """HyperPodJobs: uploads to moto's S3, the job through the real kubernetes client to
    FakeKubernetes (the EKS cluster's API server)."""
    from moto import mock_aws

    from providers.aws import sdk
    from providers.aws.hyperpod import HyperPodJobs

    aws.use_fake_keys(monkeypatch)
    monkeypatch.setattr(sdk, "K8S_BACKOFF_S", 0.01)  # our own retry of 429/5xx, shortened
    with mock_aws(), FakeKubernetes() as kube:
        s3 = aws.bucket()
        clients = {f"s3:{aws.REGION}": s3, f"k8s:{aws.EKS_ARN}": kube.api_client()}
        jobs = HyperPodJobs(clients=clients)
        s3_fake = aws.BotocoreFake(s3).watch("PutObject")
        plan = cloud_plan(jobs, HYPERPOD, [])

        def refuse() -> ErrorKind:
            kube.fail[("POST", "jobs")] = [403]
            return ErrorKind.AUTH

        def throttle() -> int:
            kube.fail[("POST", "jobs")] = [429, 503]
            return 2

        yield Harness(
            backend=jobs,
            plan=plan,
            launch=submitter(plan, jobs),
            set_state=lambda ref, state: kube.set_condition(ref.run_id, state),
            states=HYPERPOD_STATES,
            running="Running",
            finished="Succeeded",
            stopped=lambda ref: (
                ref.run_id not in kube.jobs and any(s.method == "DELETE" for s in kube.server.seen)
            ),
            unknown=lambda ref: renamed(ref, job_name="nope-1"),
            created=lambda: [s.json() for s in kube.posted()],
            create_body=lambda p: p.requests[-1].body["manifest"],
            jobs=lambda: len(kube.jobs),
            stored=lambda: aws.stored_objects(s3),
            uploads=lambda: s3_uploads(s3_fake),
            throttle=throttle,
            refuse=refuse,
            without_credentials=aws.without_credentials,
            cli_run=[str(HYPERPOD), "--provider", "aws"],
            login_hint=aws.NO_CREDENTIALS,
            bare=lambda: fresh_boto3(monkeypatch, HyperPodJobs),
        )


AZURE_STATES = {  # JobStatus of the Azure ML REST API
    "NotStarted": State.QUEUED,
    "Queued": State.QUEUED,
    "Preparing": State.QUEUED,
    "Provisioning": State.QUEUED,
    "Starting": State.QUEUED,
    "Paused": State.QUEUED,
    "Running": State.RUNNING,
    "Finalizing": State.RUNNING,
    "CancelRequested": State.RUNNING,
    "NotResponding": State.RUNNING,
    "Completed": State.SUCCEEDED,
    "Failed": State.FAILED,
    "Canceled": State.CANCELLED,
}


@backend
def azure_ml(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """CommandJobs through the real MLClient and azure-storage-blob against FakeAzureML."""
    from providers.azure.command_job import CommandJobs

    with azure.FakeAzureML() as fake:
        azure.point_sdk_at(fake, monkeypatch)
        jobs = CommandJobs(ml_client=azure.ml_client())
        overrides = ["compute.azure.compute=cpu-cluster"]
        plan = cloud_plan(jobs, QUICKSTART, overrides)

        def throttle() -> int:
            fake.fail[r"PUT /jobs/[^/]+$"] = [429, 503]
            return 2

        def refuse() -> ErrorKind:
            fake.fail[r"PUT /jobs/[^/]+$"] = [403]
            return ErrorKind.AUTH

        yield Harness(
            backend=jobs,
            plan=plan,
            launch=submitter(plan, jobs),
            set_state=lambda ref, state: fake.set_status(ref.run_id, state),
            states=AZURE_STATES,
            running="Running",
            finished="Completed",
            stopped=lambda ref: bool(fake.seen("POST", f"/jobs/{ref.run_id}/cancel$")),
            unknown=lambda ref: renamed(ref, job_name="nope-1"),
            created=lambda: [s.json() for s in fake.job_puts()],
            create_body=lambda p: p.requests[-1].body["job"],
            jobs=lambda: len(fake.jobs),
            stored=fake.stored,
            uploads=lambda: [s.path for s in fake.blob_puts()],
            throttle=throttle,
            refuse=refuse,
            without_credentials=azure.without_credentials,
            cli_run=[str(QUICKSTART), "--provider", "azure", *overrides],
            login_hint="Azure login failed (DefaultAzureCredential failed to retrieve a token",
            bare=CommandJobs,
        )


VERTEX_STATES = {  # JobState of the Vertex AI API
    "JOB_STATE_QUEUED": State.QUEUED,
    "JOB_STATE_PENDING": State.QUEUED,
    "JOB_STATE_PAUSED": State.QUEUED,
    "JOB_STATE_RUNNING": State.RUNNING,
    "JOB_STATE_UPDATING": State.RUNNING,
    "JOB_STATE_CANCELLING": State.RUNNING,
    "JOB_STATE_SUCCEEDED": State.SUCCEEDED,
    "JOB_STATE_FAILED": State.FAILED,
    "JOB_STATE_EXPIRED": State.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": State.FAILED,
    "JOB_STATE_CANCELLED": State.CANCELLED,
}


def gcs_uploads(fake: gcp.FakeGoogle) -> list[str]:
    names = []
    for s in fake.seen("POST", r"^/upload/"):
        kind = s.query["uploadType"][0]
        names.append(gcp.multipart(s)[0]["name"] if kind == "multipart" else s.json()["name"])
    return names


@backend
def vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """CustomJobs through google-cloud-aiplatform's REST transport, google-cloud-storage
    and an authorized session, against FakeGoogle."""
    from providers.gcp import sdk as gcp_sdk
    from providers.gcp.custom_job import CustomJobs

    gcp.fast_retries(monkeypatch)
    with gcp.FakeGoogle() as fake:
        jobs = gcp.custom_jobs(fake)
        plan = cloud_plan(jobs, MULTINODE, gcp.ON_VERTEX)

        def job_id(ref: RunRef) -> str:
            return ref.ids["job"].rsplit("/", 1)[-1]

        def throttle() -> int:
            fake.failures["create"] = [
                gcp.error(
                    429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com"
                ),
                gcp.error(503, "UNAVAILABLE", "The service is currently unavailable."),
            ]
            return 2

        def refuse() -> ErrorKind:
            message = "Permission 'aiplatform.customJobs.create' denied on resource."
            fake.failures["create"] = [gcp.error(403, "PERMISSION_DENIED", message)]
            return ErrorKind.AUTH

        yield Harness(
            backend=jobs,
            plan=plan,
            launch=submitter(plan, jobs),
            set_state=lambda ref, state: fake.set_state(job_id(ref), state),
            states=VERTEX_STATES,
            running="JOB_STATE_RUNNING",
            finished="JOB_STATE_SUCCEEDED",
            stopped=lambda ref: bool(fake.seen("POST", f"/{job_id(ref)}:cancel$")),
            unknown=lambda ref: renamed(ref, job=ref.ids["job"].rsplit("/", 1)[0] + "/999"),
            created=lambda: [gcp.enum_names(s.json()) for s in fake.creates()],
            create_body=lambda p: p.requests[-1].body["customJob"],
            jobs=lambda: len(fake.jobs),
            stored=fake.stored,
            uploads=lambda: gcs_uploads(fake),
            throttle=throttle,
            refuse=refuse,
            without_credentials=gcp.without_credentials,
            cli_run=[str(MULTINODE), "--provider", "gcp", *gcp.ON_VERTEX],
            login_hint=gcp_sdk.NO_CREDENTIALS,
            bare=CustomJobs,
        )


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.getfixturevalue(request.param)


# --- the contract ------------------------------------------------------------------------------


def test_plan_is_pure(harness: Harness, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)

    def no_network(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("plan() touched the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    plan = harness.plan(1)
    assert plan.to_dict() == harness.plan(1).to_dict()  # deterministic
    assert not home.exists()  # nothing written
    text = json.dumps(plan.to_dict())
    for key, value in SECRETS.items():
        assert value not in text, key
    assert "WANDB_API_KEY" not in text  # referenced through a secret store, if at all


def test_submit_sends_the_plan_once_and_finds_it_again(harness: Harness) -> None:
    need(harness, "created")
    plan = harness.plan(1)
    first = harness.backend.submit(plan)
    assert not first.existing and first.ref.run_id == plan.identity.run_id
    assert harness.created() == [harness.create_body(plan)]  # exactly what plan showed

    again = harness.backend.submit(harness.plan(1))
    assert again.existing and again.ref.run_id == first.ref.run_id
    assert len(harness.created()) == 1 and harness.jobs() == 1
    assert harness.backend.latest_attempt(plan) == 1


def test_uploads_are_tagged_and_content_addressed(harness: Harness) -> None:
    need(harness, "stored")
    plan = harness.plan(1)
    harness.backend.submit(plan)
    stored = harness.stored()
    *uploads, _ = plan.requests
    for upload in uploads:
        data, tags = stored[upload.body["uri"]]
        assert tags["run_id"] == plan.identity.run_id, upload.body["uri"]
        if "content" in upload.body:  # recipe.json: what the job will read
            assert json.loads(data) == upload.body["content"]
        else:
            assert hashlib.sha256(data).hexdigest() == upload.body["sha256"]
    assert len(harness.uploads()) == len(uploads)  # code, data, recipe.json

    before = len(harness.uploads())
    second = harness.plan(2)
    harness.backend.submit(second)
    assert [p.rsplit("/", 1)[-1] for p in harness.uploads()[before:]] == ["recipe.json"]
    assert harness.backend.latest_attempt(second) == 2


def test_throttled_create_is_retried(harness: Harness) -> None:
    """By the SDK itself (botocore, azure-core, api_core), or, for the kubernetes client
    which retries nothing, by providers.aws.sdk.k8s."""
    need(harness, "throttle")
    throttled = harness.throttle()
    ref = harness.backend.submit(harness.plan(1)).ref
    assert ref.run_id == harness.plan(1).identity.run_id
    assert len(harness.created()) == throttled + 1 and harness.jobs() == 1


def test_refused_create_leaves_no_orphan(harness: Harness) -> None:
    need(harness, "refuse")
    kind = harness.refuse()
    with pytest.raises(ProviderError) as err:
        harness.backend.submit(harness.plan(1))
    text = str(err.value)
    assert err.value.kind == kind and "\n" not in text
    assert "left in" in text and harness.jobs() == 0
    kept = list(harness.stored())
    assert not any(uri.endswith("recipe.json") for uri in kept)  # run-scoped: removed
    assert any(uri.endswith("sourcedir.tar.gz") for uri in kept)  # content-addressed: kept
    assert all(uri in text for uri in kept)  # and reported


def test_missing_credentials_are_one_line_and_exit_3(
    harness: Harness, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need(harness, "without_credentials")
    cli.env = harness.without_credentials(cli.env, str(tmp_path / "nowhere"))
    result = cli("run", *harness.cli_run)
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and harness.login_hint in line

    for key in set(os.environ) - set(cli.env):
        monkeypatch.delenv(key)
    for key, value in cli.env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ProviderError) as err:
        harness.bare().submit(harness.plan(1))
    assert err.value.kind == ErrorKind.AUTH
    assert line == f"error: {err.value}"  # the CLI says what the backend raised


def test_without_credentials_status_logs_cancel_are_one_line(
    harness: Harness, cli: CLI, tmp_path: Path
) -> None:
    """Following a run from another shell with a missing or expired login: one line, exit 3,
    no SDK noise (Azure's credential chain logs a warning per credential it tried)."""
    need(harness, "without_credentials")
    from recipes.app.ledger import Ledger

    ref = harness.launch(1)
    Ledger(Path(cli.env["RECIPE_HOME"]) / "ledger.sqlite").record(
        ref, "contract", "recipe.yaml", State.RUNNING
    )
    cli.env = harness.without_credentials(cli.env, str(tmp_path / "nowhere"))
    for command in (["status"], ["logs"], ["cancel"]):
        result = cli(*command, ref.run_id)
        assert result.returncode == 3, (command, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and harness.login_hint in line, (command, line)


def test_status_maps_every_state_of_the_service(harness: Harness) -> None:
    ref = harness.launch(1)
    seen = {}
    for state in harness.states:
        harness.set_state(ref, state)
        seen[state] = harness.backend.status(ref).state
    assert seen == harness.states


def test_status_of_an_unknown_job_is_not_found(harness: Harness) -> None:
    ref = harness.launch(1)
    with pytest.raises(ProviderError) as err:
        harness.backend.status(harness.unknown(ref))
    assert err.value.kind == ErrorKind.NOT_FOUND and "\n" not in str(err.value)


def test_cancel_stops_a_running_job(harness: Harness) -> None:
    ref = harness.launch(1)
    harness.set_state(ref, harness.running)
    after = harness.backend.cancel(ref)
    assert harness.stopped(ref)
    assert after.state in (State.RUNNING, State.CANCELLED)  # stopping, or stopped already


def test_cancel_leaves_a_finished_job_alone(harness: Harness) -> None:
    ref = harness.launch(1)
    harness.set_state(ref, harness.finished)
    assert harness.backend.cancel(ref).state == State.SUCCEEDED
    assert not harness.stopped(ref)
