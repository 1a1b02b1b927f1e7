"""The slice of the Kubernetes API a HyperPod job uses, for the real kubernetes client.

The HyperPodPyTorchJob custom resource (sagemaker.amazonaws.com/v1, hyperpodpytorchjobs:
create, list, get, delete) and pods (list by label, read log), with the bodies the API
server answers: the created object with a `status.conditions` list, `Status` objects for
errors (409 AlreadyExists, 404 NotFound, ...) as kubernetes.io/docs/reference/using-api/api-concepts
describes them.
"""

from __future__ import annotations

import re
from typing import Any

from providers.aws.hyperpod import GROUP, PLURAL, VERSION
from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

JOBS = rf"/apis/{GROUP}/{VERSION}/namespaces/(?P<ns>[^/]+)/{PLURAL}"
_REASONS = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests", 500: "InternalError"}


def status_reply(code: int, reason: str, message: str) -> Reply:
    """A Kubernetes `Status` object, the body of every error answer."""
    return json_reply(
        code,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
    )


class FakeKubernetes(Served):
    """HyperPodPyTorchJobs and their pods; `fail[(method, kind)]` queues error statuses."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.fail: dict[tuple[str, str], list[int]] = {}  # ("POST", "jobs") -> statuses
        self.server = FakeServer()
        s = self.server
        s.route("POST", JOBS, self._failing("POST", self.create))
        s.route("GET", JOBS, self._failing("LIST", self.list))
        s.route("GET", JOBS + r"/(?P<name>[^/]+)", self._failing("GET", self.get))
        s.route("DELETE", JOBS + r"/(?P<name>[^/]+)", self._failing("DELETE", self.delete))
        s.route("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods", self.pods)
        s.route("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log", self.log)

    def _failing(self, what: str, handler: Any) -> Any:
        def handle(request: Seen, match: re.Match[str]) -> Reply:
            queued = self.fail.get((what, "jobs"))
            if queued:
                code = queued.pop(0)
                reason = _REASONS.get(code, "InternalError")
                return status_reply(code, reason, f"fake {code} answer")
            return handler(request, match)

        return handle

    def posted(self) -> list[Seen]:
        return [s for s in self.server.seen if s.method == "POST" and re.fullmatch(JOBS, s.path)]

    def create(self, request: Seen, _: re.Match[str]) -> Reply:
        body = request.json()
        name = body["metadata"]["name"]
        if name in self.jobs:
            return status_reply(409, "AlreadyExists", f'{PLURAL}.{GROUP} "{name}" already exists')
        self.jobs[name] = {
            **body,
            "status": {"conditions": [{"type": "Created", "status": "True"}]},
        }
        return json_reply(201, self.jobs[name])

    def list(self, _: Seen, __: re.Match[str]) -> Reply:
        return json_reply(
            200,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "HyperPodPyTorchJobList",
                "items": list(self.jobs.values()),
                "metadata": {},
            },
        )

    def get(self, _: Seen, match: re.Match[str]) -> Reply:
        job = self.jobs.get(match["name"])
        if job is None:
            return status_reply(404, "NotFound", f'{PLURAL}.{GROUP} "{match["name"]}" not found')
        return json_reply(200, job)

    def delete(self, _: Seen, match: re.Match[str]) -> Reply:
        if self.jobs.pop(match["name"], None) is None:
            return status_reply(404, "NotFound", f'{PLURAL}.{GROUP} "{match["name"]}" not found')
        return json_reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def pods(self, request: Seen, _: re.Match[str]) -> Reply:
        selector = request.query["labelSelector"][0]
        items = [
            {"metadata": {"name": f"{name}-pod-{i}", "labels": {"recipe-run-id": name}}}
            for name in self.jobs
            if selector == f"recipe-run-id={name}"
            for i in range(2)
        ]
        return json_reply(
            200, {"kind": "PodList", "apiVersion": "v1", "items": items, "metadata": {}}
        )

    def log(self, _: Seen, match: re.Match[str]) -> Reply:
        text = f"launch: node {match['pod'][-1]}\nstep 1/10\n"
        return 200, {"Content-Type": "text/plain"}, text.encode()

    def set_condition(self, name: str, kind: str, message: str = "") -> None:
        """The HyperPod training operator appends a condition as the job moves on."""
        self.jobs[name]["status"]["conditions"].append(
            {"type": kind, "status": "True", "message": message}
        )

    def api_client(self) -> Any:
        """A real kubernetes ApiClient pointed at this fake."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.server.url
        return client.ApiClient(config)
