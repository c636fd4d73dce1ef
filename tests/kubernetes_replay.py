"""Recorded Kubernetes API exchanges, replayed through the official client's own transport.

The client sends every request through ``ApiClient.rest_client.pool_manager`` (a urllib3
``PoolManager``). ``Replayer`` stands in for it: each request must match the next recorded one
(method, path, query, and the fields the recording gives of the JSON body), and gets the
recorded response, parsed by the real client as it would parse the API server's. So the tests
run the runtime's real calls, serialisation and error handling, without a cluster.

A recording is a JSON file under ``tests/recordings/kubernetes/``::

    {"source": "...", "scenario": "...",
     "exchanges": [{"request": {"method": "GET", "path": "/apis/apps/v1/...", "query": {...},
                                "body": {...fields that must match...}, "content_type": "..."},
                    "response": {"status": 200, "body": {...}} | {"error": "connection refused"}}]}

``query`` is compared whole (absent: no query); ``body`` is a subset: every key it names must
be in the request with the same value, recursively, and lists must have the same length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import urllib3
from kubernetes import client
from kubernetes.client import ApiClient

RECORDINGS: Final = Path(__file__).parent / "recordings" / "kubernetes"
HOST: Final = "https://k8s.test:6443"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    assert data.get("source"), f"{name}: every recording says where its shapes come from"
    return data


def subset_mismatch(expected: Any, actual: Any, where: str = "body") -> str | None:
    """Where ``actual`` differs from the fields ``expected`` names; None when it has them all."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}.{key}: missing (request has {sorted(actual)})"
            problem = subset_mismatch(value, actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{where}: expected a list of {len(expected)}, got {actual!r}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            problem = subset_mismatch(want, got, f"{where}[{index}]")
            if problem:
                return problem
        return None
    return None if expected == actual else f"{where}: expected {expected!r}, got {actual!r}"


class Replayer:
    """A ``PoolManager`` stand-in that serves one recording's exchanges in order."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.exchanges: list[dict[str, Any]] = [x for name in names for x in load(name)["exchanges"]]
        self.position = 0
        self.requests: list[dict[str, Any]] = []  # what was sent, for assertions beyond the recording

    def request(
        self,
        method: str,
        url: str,
        fields: Any = None,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        **_: Any,
    ) -> urllib3.HTTPResponse:
        parts = urlsplit(url)
        query = {
            key: values[0] if len(values) == 1 else values for key, values in parse_qs(parts.query).items()
        }
        sent = json.loads(body) if body else None
        self.requests.append({"method": method, "path": parts.path, "query": query, "body": sent})
        step = f"{'+'.join(self.names)} exchange #{self.position + 1}"
        assert self.position < len(self.exchanges), (
            f"{step}: unexpected request {method} {parts.path}?{parts.query}"
        )
        exchange = self.exchanges[self.position]
        self.position += 1
        want = exchange["request"]
        assert (method, parts.path) == (want["method"], want["path"]), (
            f"{step}: expected {want['method']} {want['path']}, got {method} {parts.path}"
        )
        assert query == want.get("query", {}), f"{step}: query {query} != recorded {want.get('query', {})}"
        if "content_type" in want:
            got_type = (headers or {}).get("Content-Type")
            assert got_type == want["content_type"], (
                f"{step}: Content-Type {got_type} != {want['content_type']}"
            )
        if "body" in want:
            problem = subset_mismatch(want["body"], sent)
            assert problem is None, f"{step}: {problem}"
        return self._respond(url, exchange["response"])

    @staticmethod
    def _respond(url: str, response: Mapping[str, Any]) -> urllib3.HTTPResponse:
        if "error" in response:
            reason = urllib3.exceptions.NewConnectionError(None, response["error"])  # type: ignore[arg-type]
            raise urllib3.exceptions.MaxRetryError(None, url, reason)  # type: ignore[arg-type]
        payload = response.get("body")
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        return urllib3.HTTPResponse(
            body=data,
            status=int(response["status"]),
            reason=response.get("reason", ""),
            headers={"Content-Type": content_type, **response.get("headers", {})},
            preload_content=False,
        )

    def clear(self) -> None:
        """What ``ApiClient.close`` calls on a pool manager."""

    def assert_done(self) -> None:
        left = self.exchanges[self.position :]
        assert not left, f"{len(left)} recorded exchange(s) never requested, next: {left[0]['request']}"


def replay_client(*names: str) -> tuple[ApiClient, Replayer]:
    """A real ``ApiClient`` whose transport replays ``names`` in order."""
    configuration = client.Configuration()
    configuration.host = HOST
    api = ApiClient(configuration)
    replayer = Replayer(*names)
    api.rest_client.pool_manager = replayer  # type: ignore[assignment]
    return api, replayer
