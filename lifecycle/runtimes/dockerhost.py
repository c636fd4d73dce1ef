"""The connection to the Docker engine, shared by the docker and compose runtimes.

The client is made on first use, not when the runtime is built: the app must come up (and
show "Offline: Docker is not reachable") while the engine is down, and pick the engine up
once it is started, without a restart of the app.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import docker
import requests
from docker import DockerClient
from docker.errors import APIError, DockerException

from lifecycle.runtimes.protocol import EngineUnavailable

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT_S = 30.0


def endpoint(environ: Mapping[str, str] | None = None) -> str:
    """Where the SDK (and the docker CLI) will look for the engine."""
    environ = os.environ if environ is None else environ
    return environ.get("DOCKER_HOST") or DEFAULT_ENDPOINT


def _root_reason(exc: BaseException) -> str:
    """The OS-level cause ("Connection refused", "Permission denied") under the SDK's wrapping."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        # urllib3 keeps the cause in args rather than in __cause__.
        nested = [arg for arg in current.args if isinstance(arg, BaseException)]
        current = current.__cause__ or current.__context__ or (nested[0] if nested else None)
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def is_unreachable(exc: BaseException) -> bool:
    """A failure to talk to the engine at all, as opposed to the engine saying no (APIError)."""
    # APIError is also a requests HTTPError: an answer, so the engine is there.
    return isinstance(exc, requests.RequestException) and not isinstance(exc, APIError)


class DockerHost:
    """One lazily connected client; after a connection failure the next call reconnects."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, base_url: str | None = None) -> None:
        """``base_url``: this engine rather than DOCKER_HOST's (a Swarm manager the catalog names)."""
        self.timeout_s = timeout_s
        self._base_url = base_url
        self._client: DockerClient | None = None
        self._endpoint = base_url or endpoint()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def client(self) -> DockerClient:
        """The connected client; raises EngineUnavailable naming the endpoint it tried."""
        with self._lock:
            if self._client is None:
                self._endpoint = self._base_url or endpoint()
                try:
                    self._client = self.connect()
                except DockerException as exc:
                    raise EngineUnavailable(self._endpoint, _root_reason(exc)) from exc
            return self._client

    def connect(self) -> DockerClient:
        """A new client of this engine, not shared (an event stream closes its own when it ends).
        Both forms ask the engine for its API version ("auto"), so this is a real probe."""
        if self._base_url is None:
            return docker.from_env(timeout=int(self.timeout_s))
        return DockerClient(base_url=self._base_url, version="auto", timeout=int(self.timeout_s))

    @contextmanager
    def calls(self) -> Iterator[DockerClient]:
        """Use the client; lost connections come out as EngineUnavailable, API refusals unchanged."""
        client = self.client()
        try:
            yield client
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            self.forget()
            raise EngineUnavailable(self._endpoint, _root_reason(exc)) from exc

    def forget(self) -> None:
        """Drop the client so the next call reconnects (the engine may have restarted)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def ping(self) -> None:
        """Raise EngineUnavailable unless the engine answers now."""
        with self.calls() as client:
            client.ping()
