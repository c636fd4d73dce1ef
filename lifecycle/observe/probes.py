"""Readiness and liveness probes, one per engine.

Each engine signals "model loaded" differently (see DESIGN.md):

- NIM: ``/v1/health/ready`` is 503 until the model is loaded; ``/v1/health/live`` is up earlier.
- llama.cpp: ``/health`` is 503 "Loading model", then 200.
- vLLM: ``/health`` is 200 while the engine lives, so ready also needs ``/v1/models`` to list the model.
- Any OpenAI-compatible server: ``/v1/models`` answering 200.

Probes never raise: every outcome becomes a ``ProbeResult`` whose ``reason`` a user can read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx

DEFAULT_TIMEOUT_S = 2.0

_READY_PATHS = {
    "nim": "/v1/health/ready",
    "llamacpp": "/health",
    "vllm": "/health",
    "openai": "/v1/models",
}
_LIVE_PATHS = {
    "nim": "/v1/health/live",
    "llamacpp": "/health",
    "vllm": "/health",
    "openai": "/v1/models",
}


class ProbeTarget(Protocol):
    """What a probe needs to know of a model; ``ModelSpec`` satisfies it."""

    @property
    def url(self) -> str: ...
    @property
    def engine(self) -> str: ...
    @property
    def health_path(self) -> str | None: ...
    @property
    def served_model(self) -> str: ...


@dataclass(frozen=True)
class ProbeResult:
    # Ready for probe_ready, alive for probe_live.
    ok: bool
    # Something answered HTTP on the port, whatever it said.
    answered: bool
    reason: str
    status_code: int | None = None
    elapsed_s: float = 0.0


def ready_path(target: ProbeTarget) -> str:
    return target.health_path or _READY_PATHS[str(target.engine)]


def _get(client: httpx.Client, url: str) -> tuple[httpx.Response | None, str]:
    try:
        return client.get(url), ""
    except httpx.ConnectError:
        return None, f"nothing answers at {url} (connection refused)"
    except httpx.TimeoutException:
        return None, f"{url} did not answer within {client.timeout.read}s"
    except httpx.HTTPError as exc:
        return None, f"{url} failed: {exc}"


def _lists_model(response: httpx.Response, model: str) -> bool:
    try:
        data = response.json().get("data", [])
    except ValueError:
        return False
    return any(isinstance(m, dict) and m.get("id") == model for m in data)


def _result(start: float, ok: bool, answered: bool, reason: str, code: int | None) -> ProbeResult:
    return ProbeResult(ok, answered, reason, code, time.perf_counter() - start)


@contextmanager
def _client_for(client: httpx.Client | None, timeout_s: float) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout_s) as own:
        yield own


class ReadyProbe(Protocol):
    """The shape of ``probe_ready``: the reconciler takes another one in the fake-runtime tests,
    where no server answers HTTP."""

    def __call__(
        self, target: ProbeTarget, timeout_s: float = ..., *, client: httpx.Client | None = None
    ) -> ProbeResult: ...


def probe_ready(
    target: ProbeTarget, timeout_s: float = DEFAULT_TIMEOUT_S, *, client: httpx.Client | None = None
) -> ProbeResult:
    """Is the model loaded and serving? Engine-aware, with a short timeout.

    Pollers pass their own ``client`` (its timeout applies): a new client costs ~30 ms of CPU
    (its TLS context), far more than the probe itself.
    """
    start = time.perf_counter()
    base = target.url.rstrip("/")
    path = ready_path(target)
    with _client_for(client, timeout_s) as client:
        response, error = _get(client, base + path)
        if response is None:
            return _result(start, False, False, error, None)
        code = response.status_code
        if code != 200:
            detail = response.text.strip()[:200]
            return _result(start, False, True, f"{path} answered {code}: {detail}", code)
        # vLLM's /health only says the engine lives; the model is ready once listed.
        if str(target.engine) == "vllm" and not target.health_path:
            models, error = _get(client, base + "/v1/models")
            if models is None:
                return _result(start, False, True, error, None)
            if models.status_code != 200 or not _lists_model(models, target.served_model):
                reason = f"/v1/models does not list {target.served_model!r} yet"
                return _result(start, False, True, reason, models.status_code)
        return _result(start, True, True, "ready", code)


def probe_live(target: ProbeTarget, timeout_s: float = DEFAULT_TIMEOUT_S) -> ProbeResult:
    """Is the server process up and answering HTTP, loaded or not?"""
    start = time.perf_counter()
    path = _LIVE_PATHS[str(target.engine)]
    with httpx.Client(timeout=timeout_s) as client:
        response, error = _get(client, target.url.rstrip("/") + path)
    if response is None:
        return _result(start, False, False, error, None)
    # llama.cpp answers 503 on /health while loading: that still proves it is alive.
    alive = response.status_code in (200, 503)
    reason = "alive" if alive else f"{path} answered {response.status_code}"
    return _result(start, alive, True, reason, response.status_code)
