"""Servers somebody else starts and stops (``runtime: external``).

The app never starts or stops them (their ``can_load`` is false); it only probes. So
``check`` answers "is it reachable", ``inspect`` "is it alive", and start/stop explain
how to do by hand what the app can't.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.core.events import redact_text
from lifecycle.core.values import Availability, Handle, Observation
from lifecycle.observe.probes import probe_live
from lifecycle.runtimes import logfile
from lifecycle.runtimes.protocol import RuntimeFailure
from settings import Settings


@dataclass(frozen=True)
class _Target:
    """A ``ProbeTarget`` rebuilt from a handle, since ``inspect`` gets no spec."""

    url: str
    engine: str
    health_path: str | None
    served_model: str


class ExternalRuntime:
    kind = RuntimeKind.EXTERNAL.value

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def handle_for(self, spec: ModelSpec) -> Handle:
        """The handle to ``inspect`` an external server with; it carries what the probe needs."""
        extra = {"url": spec.url, "engine": str(spec.engine), "served_model": spec.served_model}
        if spec.health_path:
            extra["health_path"] = spec.health_path
        return Handle(runtime=self.kind, model_id=spec.id, ref=spec.url, started_at=time.time(), extra=extra)

    def check(self, spec: ModelSpec) -> Availability:
        result = probe_live(spec)
        if not result.ok:
            return Availability.offline(f"external server not answering at {spec.url}: {result.reason}")
        return Availability.ok()

    def start(self, spec: ModelSpec) -> Handle:
        how = spec.manual_start or f"start it by hand so that it answers at {spec.url}"
        raise RuntimeFailure(f"{spec.id} is an external server; the app does not start it: {how}")

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        raise RuntimeFailure(
            f"{handle.model_id} is an external server; the app does not stop it: stop it where it was started"
        )

    def inspect(self, handle: Handle) -> Observation:
        target = _Target(
            url=handle.extra.get("url", handle.ref),
            engine=handle.extra.get("engine", "openai"),  # /v1/models answers on any of them
            health_path=handle.extra.get("health_path"),
            served_model=handle.extra.get("served_model", handle.model_id),
        )
        return Observation(running=probe_live(target).ok)

    def find_managed(self) -> list[Handle]:
        return []  # nothing is ours to adopt or stop

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        # Only our own notes land here; the server logs wherever it was started.
        return redact_text(logfile.tail(logfile.log_path(self.settings.log_dir, model_id), tail))
