"""Endpoints on this machine: `recipe serve` started in the background, one per deployment,
behind a small weighted router per endpoint (providers/local/router.py).

Plan names loopback ports derived from the deployment and the endpoint (the same deploy,
the same ports), so it shows exactly the commands deploy starts. Clients call the
router's URL; it sends each request to a deployment by weight and keeps each one's
own traffic statistics, which is what a canary release needs here (ReleaseBackend).
Files live under $RECIPE_HOME/endpoints/<endpoint>/: router.json (upstreams, weights),
router.pid.json, and <deployment>/ (state.json with pid and URL, server.log). A new
deployment starts beside the old one, takes all the traffic once it answers, and only
then is the old one stopped: the endpoint never points at nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
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
    TrafficSample,
)
from providers.local import runtime as rt
from providers.local.router import RouterClient, RouterError
from recipes.cost.serving import EndpointEstimate
from recipes.errors import Problem, RecipeInputError
from recipes.home import runs_dir
from recipes.schema import Recipe

HOST = "127.0.0.1"
PORT_BASE, PORT_SPAN = 20000, 10000  # deterministic loopback ports: 20000-29999
ROUTER_PORT_BASE = 30000  # routers: 30000-39999, never a deployment's port
READY_TIMEOUT_S = 180.0  # loading the model on a busy 2-core machine
STOP_TIMEOUT_S = 30.0
SERVE_API = "local:serve"
ROUTE_API = "local:route"
ROUTER_STATE, ROUTER_PID = "router.json", "router.pid.json"
ROUTER_READY_S = 30.0
API_KEY_ENV = "RECIPE_SERVE_API_KEY"


def port_of(version: str) -> int:
    return PORT_BASE + int(version, 16) % PORT_SPAN


def router_port(endpoint: str, home: Path) -> int:
    """From the endpoint's name and RECIPE_HOME: two homes on one machine do not collide."""
    digest = hashlib.sha256(f"{home}\0{endpoint}".encode()).hexdigest()[:8]
    return ROUTER_PORT_BASE + int(digest, 16) % PORT_SPAN


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
        spec = serving.serving_spec(recipe, artifact, image="", gpus=0, engine="recipe-serve")
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
            requests=(Request(SERVE_API, body), self._route(block.endpoint, deployment, body)),
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

    def _route(self, endpoint: str, deployment: str, serve: dict[str, Any]) -> Request:
        port = router_port(endpoint, self.home())
        state = self.home() / endpoint / ROUTER_STATE
        return Request(
            ROUTE_API,
            {
                "command": ["python", "-m", "providers.local.router", "--port", str(port)]
                + ["--state", str(state)],
                "url": f"http://{HOST}:{port}",
                "upstream": {deployment: serve["url"]},
                "weights": {deployment: 100},
                "then": "stop every other deployment of the endpoint",
            },
        )

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, plan: EndpointPlan) -> Deployed:
        serve, route = (r.body for r in plan.requests)
        ref = self._ref(plan)
        created = self._ensure_server(plan, serve)
        try:
            created += self._ensure_router(plan.endpoint, route)
            router = RouterClient(route["url"])
            current = _call(router.state, "read the router's state")
            upstreams = {**current.get("upstreams", {}), **route["upstream"]}
            if (
                current.get("upstreams") == route["upstream"]
                and current.get("weights") == route["weights"]
            ):
                return Deployed(ref, existing=not created, created=tuple(created))
            weights = {name: (100 if name == plan.deployment else 0) for name in upstreams}
            _call(lambda: router.set_state(upstreams, weights), "move the traffic")
        except BaseException:
            if created:  # the server this call started serves nothing: stop it
                directory = self.home() / plan.endpoint / plan.deployment
                self._abandon(rt.read_json(directory / rt.STATE).get("pid"), directory)
            raise
        for other in [name for name in upstreams if name != plan.deployment]:
            self.retire(ref, other)
        return Deployed(ref, created=tuple(created))

    def _ref(self, plan: EndpointPlan) -> EndpointRef:
        serve, route = (r.body for r in plan.requests)
        return EndpointRef(
            self.name, plan.endpoint, plan.deployment, {"url": route["url"], "server": serve["url"]}
        )

    def _ensure_server(self, plan: EndpointPlan, body: dict[str, Any]) -> list[str]:
        state = rt.read_json(self.home() / plan.endpoint / plan.deployment / rt.STATE)
        if _alive(state.get("pid")) and self._healthy(body["url"]):
            return []
        self._start(body, self.home() / plan.endpoint / plan.deployment)
        return [f"{SERVE_API} {plan.deployment} at {body['url']}"]

    def _ensure_router(self, endpoint: str, body: dict[str, Any]) -> list[str]:
        directory = self.home() / endpoint
        pid = rt.read_json(directory / ROUTER_PID).get("pid")
        if _alive(pid) and RouterClient(body["url"]).reachable():
            return []
        port = int(body["url"].rsplit(":", 1)[1])
        if not _port_free(port):
            raise ProviderError(
                f"port {port} on {HOST} is in use by another program; the router of "
                f"endpoint {endpoint} needs it",
                ErrorKind.CONFLICT,
            )
        directory.mkdir(parents=True, exist_ok=True)
        command = [self._python, *body["command"][1:]]
        process = _spawn(command, directory / "router.log")
        rt.write_json_atomic(directory / ROUTER_PID, {"pid": process.pid, "url": body["url"]})
        deadline = time.time() + ROUTER_READY_S
        while time.time() < deadline and process.poll() is None:
            if RouterClient(body["url"]).reachable():
                return [f"{ROUTE_API} {endpoint} at {body['url']}"]
            time.sleep(0.2)
        _stop(process.pid)
        tail = "\n".join(rt.tail(directory / "router.log", 10))
        raise ProviderError(f"the router of {endpoint} did not start; its log ended with:\n{tail}")

    # --- a canary release (ReleaseBackend) -------------------------------------------

    def deploy_candidate(self, plan: EndpointPlan, stable: EndpointRef | None) -> EndpointRef:
        serve, route = (r.body for r in plan.requests)
        self._ensure_server(plan, serve)
        self._ensure_router(plan.endpoint, route)
        router = RouterClient(route["url"])
        current = _call(router.state, "read the router's state")
        upstreams = {**current.get("upstreams", {}), **route["upstream"]}
        weights = {name: current.get("weights", {}).get(name, 0) for name in upstreams}
        if not any(weights.values()):  # the endpoint's first version
            weights[plan.deployment] = 100
        _call(lambda: router.set_state(upstreams, weights), "add the candidate")
        return self._ref(plan)

    def set_traffic(self, ref: EndpointRef, weights: dict[str, int]) -> None:
        router = RouterClient(ref.ids["url"])
        _call(lambda: router.set_weights(weights), "set the traffic split")

    def invoke_deployment(
        self, ref: EndpointRef, deployment: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._post(ref.ids["url"], body, {"x-recipe-deployment": deployment})

    def traffic(self, ref: EndpointRef, deployment: str, since: float) -> TrafficSample:
        router = RouterClient(ref.ids["url"])
        stats = _call(lambda: router.stats(deployment, since), "read the traffic statistics")
        return TrafficSample(
            deployment=deployment,
            requests=int(stats.get("requests") or 0),
            errors=int(stats.get("errors") or 0),
            p95_ms=stats.get("p95_ms"),
            since=since,
            until=float(stats.get("window_end") or time.time()),
        )

    def retire(self, ref: EndpointRef, deployment: str) -> None:
        router = RouterClient(ref.ids["url"])
        current = _call(router.state, "read the router's state")
        upstreams = dict(current.get("upstreams", {}))
        weights = dict(current.get("weights", {}))
        if weights.get(deployment):
            raise ProviderError(
                f"{deployment} still has {weights[deployment]}% of the traffic; not removed",
                ErrorKind.CONFLICT,
            )
        if deployment in upstreams:
            upstreams.pop(deployment)
            weights.pop(deployment, None)
            _call(lambda: router.set_state(upstreams, weights), "remove a deployment")
        directory = self.home() / ref.endpoint / deployment
        _stop(rt.read_json(directory / rt.STATE).get("pid"))
        shutil.rmtree(directory, ignore_errors=True)

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
        process = _spawn(command, directory / "server.log")
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

    # --- status / invoke / delete ----------------------------------------------------

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus:
        status = EndpointStatus(ref.endpoint, self.name, EndpointState.ABSENT)
        directory = self.home() / ref.endpoint
        pid = rt.read_json(directory / ROUTER_PID).get("pid")
        if not _alive(pid):
            status.message = "no router runs for this endpoint here"
            return status
        url = ref.ids.get("url", "")
        status.url = url
        try:
            current = RouterClient(url).state()
        except RouterError as exc:
            status.state, status.message = EndpointState.FAILED, str(exc)
            return status
        status.traffic = {k: v for k, v in current.get("weights", {}).items() if v}
        status.deployment = max(status.traffic, key=status.traffic.__getitem__, default="")
        status.replicas = len(status.traffic)
        healthy = RouterClient(url).healthy()
        status.state = EndpointState.READY if healthy else EndpointState.FAILED
        if not healthy:
            status.message = "no deployment with traffic answers /health"
        return status

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        return self._post(ref.ids.get("url", ""), body, {})

    @staticmethod
    def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
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
        _stop(rt.read_json(directory / ROUTER_PID).get("pid"))
        for deployment in sorted(directory.glob("*")):
            if deployment.is_dir():
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


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A background process of the endpoint: its own session, so it outlives this command
    (delete stops it), output to its log. Loopback only: it needs no API key, and one
    inherited from the deploying shell would lock `recipe endpoint invoke` out."""
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _call(action: Any, what: str) -> Any:
    """A router call; its failure is the provider's error, with what was being done."""
    try:
        return action()
    except RouterError as exc:
        kind = ErrorKind.UNREACHABLE if exc.status is None else ErrorKind.API
        raise ProviderError(f"could not {what}: {exc}", kind) from None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port whose last connections linger in TIME_WAIT (a
        # deployment just stopped) is free to listen on again.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
