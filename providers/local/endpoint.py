"""Endpoints on this machine: `recipe serve` started in the background, one per deployment.

Plan names a loopback port derived from the deployment (the same deploy, the same port),
so the plan shows exactly the command deploy starts. A deployment's files live under
$RECIPE_HOME/endpoints/<endpoint>/<deployment>/ (state.json with pid and URL, server.log).
A new deployment of the same endpoint starts beside the old one, and the old one stops
once the new one answers /health: the stable name never points at nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from providers import serving
from providers.base import (
    Artifact,
    Deployed,
    EndpointPlan,
    EndpointRef,
    EndpointState,
    EndpointStatus,
    ErrorKind,
    ProviderError,
    Request,
    ServingSpec,
)
from providers.local import runtime as rt
from recipes.cost.serving import EndpointEstimate
from recipes.errors import Problem, RecipeInputError
from recipes.home import runs_dir
from recipes.schema import Recipe

HOST = "127.0.0.1"
PORT_BASE, PORT_SPAN = 20000, 10000  # deterministic loopback ports: 20000-29999
READY_TIMEOUT_S = 180.0  # loading the model on a busy 2-core machine
STOP_TIMEOUT_S = 30.0
SERVE_API = "local:serve"
API_KEY_ENV = "RECIPE_SERVE_API_KEY"


def port_of(version: str) -> int:
    return PORT_BASE + int(version, 16) % PORT_SPAN


class LocalEndpoints:
    """`recipe serve` processes on loopback, behind the same seam as the clouds."""

    name = "local"

    def __init__(self, home: Path | None = None, python: str = sys.executable) -> None:
        self._home = home
        self._python = python

    def home(self) -> Path:
        return self._home or runs_dir() / "endpoints"

    # --- plan ------------------------------------------------------------------------

    def plan_endpoint(self, recipe: Recipe, artifact: Artifact) -> EndpointPlan:
        block = serving.deploy_block(recipe)
        if artifact.provider != self.name:
            raise RecipeInputError(
                Problem(
                    f"run {artifact.run_id} was trained on {artifact.provider}",
                    field="--provider",
                    hint=f"use --provider {artifact.provider}",
                )
            )
        spec = _spec(recipe, artifact)
        version = serving.version_of(artifact, spec, {"host": HOST})
        deployment = f"{block.endpoint}-{version}"
        port = port_of(version)
        body = {
            "command": ["recipe", "serve", artifact.uri, "--host", HOST, "--port", str(port)]
            + ["--max-model-len", str(spec.max_model_len)],
            "url": f"http://{HOST}:{port}",
            "deployment": deployment,
            "served": spec.served_name,
        }
        tags = serving.endpoint_tags(recipe, artifact, block.endpoint)
        return EndpointPlan(
            provider=self.name,
            endpoint=block.endpoint,
            deployment=deployment,
            region="this machine",
            artifact=artifact,
            serving=spec,
            requests=(Request(SERVE_API, body),),
            compute={"instance_type": "this machine", "min_replicas": 1, "max_replicas": 1},
            tags={k: str(v) for k, v in tags.items()},
            estimate=EndpointEstimate(
                instance_type="this machine",
                hourly_usd=0.0,
                monthly_usd=0.0,
                max_monthly_usd=0.0,
                basis="this machine: no charge",
            ),
            notes=(
                "one replica on loopback; deploy.min/max_replicas apply to the clouds",
                f"files under {self.home() / block.endpoint / deployment}",
            ),
        )

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, plan: EndpointPlan) -> Deployed:
        (request,) = plan.requests
        body = request.body
        ref = EndpointRef(self.name, plan.endpoint, plan.deployment, {"url": body["url"]})
        state = self._state(ref)
        if (
            state.get("deployment") == plan.deployment
            and _alive(state.get("pid"))
            and self._healthy(body["url"])
        ):
            return Deployed(ref, existing=True)
        directory = self.home() / plan.endpoint / plan.deployment
        self._start(body, directory)
        self._retire_others(plan.endpoint, plan.deployment)
        return Deployed(ref, created=(f"{SERVE_API} {plan.deployment} at {body['url']}",))

    def _start(self, body: dict[str, Any], directory: Path) -> None:
        port = int(body["url"].rsplit(":", 1)[1])
        if not _port_free(port):
            raise ProviderError(
                f"port {port} on {HOST} is in use by another program; {body['deployment']} "
                "needs it (the port comes from the deployment's name)",
                ErrorKind.CONFLICT,
            )
        directory.mkdir(parents=True, exist_ok=True)
        command = [self._python, "-m", "recipes", *body["command"][1:]]
        # Loopback only: the server needs no key, and one inherited from the deploying
        # shell would lock `recipe endpoint invoke` out.
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
        with (directory / "server.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # outlives this command; stopped by delete
            )
        try:
            rt.write_json_atomic(
                directory / rt.STATE,
                {"pid": process.pid, "url": body["url"], "deployment": body["deployment"]},
            )
            if self._wait_ready(process, body):
                return
        except BaseException:  # Ctrl-C while waiting: nothing half-created stays behind
            self._abandon(process.pid, directory)
            raise
        tail = "\n".join(rt.tail(directory / "server.log", 15))
        self._abandon(process.pid, directory)
        raise ProviderError(
            f"the local server for {body['deployment']} did not become healthy at "
            f"{body['url']}; its log ended with:\n{tail}"
        )

    def _wait_ready(self, process: subprocess.Popen[bytes], body: dict[str, Any]) -> bool:
        """Healthy, and ours: the process lives and serves the deployment's models."""
        deadline = time.time() + READY_TIMEOUT_S
        while time.time() < deadline:
            if process.poll() is not None:
                return False
            if self._healthy(body["url"]) and self._serves(body["url"], body["served"]):
                return True
            time.sleep(0.5)
        return False

    @staticmethod
    def _abandon(pid: int, directory: Path) -> None:
        _stop(pid)
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            directory.parent.rmdir()  # the endpoint's directory, when this was its only one

    def _retire_others(self, endpoint: str, keep: str) -> None:
        for directory in sorted((self.home() / endpoint).glob("*")):
            if directory.name != keep and directory.is_dir():
                _stop(rt.read_json(directory / rt.STATE).get("pid"))
                shutil.rmtree(directory, ignore_errors=True)

    # --- status / invoke / delete ----------------------------------------------------

    def _state(self, ref: EndpointRef) -> dict[str, Any]:
        return rt.read_json(self.home() / ref.endpoint / ref.deployment / rt.STATE)

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus:
        state = self._state(ref)
        status = EndpointStatus(ref.endpoint, self.name, EndpointState.ABSENT)
        if not state:
            status.message = "no server was started for this deployment here"
            return status
        status.url, status.deployment = state["url"], ref.deployment
        if not _alive(state.get("pid")):
            status.state, status.message = EndpointState.FAILED, "the server process exited"
        elif self._healthy(state["url"]):
            status.state, status.replicas = EndpointState.READY, 1
            status.traffic = {ref.deployment: 100}
        else:
            status.state = EndpointState.CREATING
        return status

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        url = self._state(ref).get("url") or ref.ids.get("url", "")
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc.read())
            raise ProviderError(
                f"the endpoint answered {exc.code}: {detail}",
                ErrorKind.NOT_FOUND if exc.code == 404 else ErrorKind.API,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ProviderError(
                f"cannot reach {url}: {getattr(exc, 'reason', exc)}", ErrorKind.UNREACHABLE
            ) from None

    def delete_endpoint(self, ref: EndpointRef) -> None:
        directory = self.home() / ref.endpoint
        for deployment in sorted(directory.glob("*")):
            _stop(rt.read_json(deployment / rt.STATE).get("pid"))
        shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def _serves(url: str, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as response:
                listed = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return name in {m.get("id") for m in listed.get("data", []) if isinstance(m, dict)}

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def _spec(recipe: Recipe, artifact: Artifact) -> ServingSpec:
    block = serving.deploy_block(recipe)
    adapters = {artifact.name: "adapter"} if artifact.kind == "adapter" else {}
    base = artifact.base_model if artifact.kind == "adapter" else artifact.kind
    return ServingSpec(
        engine="recipe-serve",
        image="",
        base_model=base if base != "full" else "model",
        served_name=artifact.name,
        adapters=adapters,
        max_model_len=block.max_model_len or recipe.data.max_seq_len,
        max_lora_rank=artifact.lora_rank,
        gpus=0,
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode("utf-8", errors="replace")


def _alive(pid: Any) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(pid: Any) -> None:
    """SIGTERM (the server drains in-flight requests), then SIGKILL if it lingers."""
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(pid), signal.SIGTERM)
    deadline = time.time() + STOP_TIMEOUT_S
    while time.time() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(int(pid), os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(pid), signal.SIGKILL)
