"""Which runtime serves which model: one instance per ``RuntimeKind`` for one ``Settings``.

Runtimes are created on first use and their modules imported then, so the process and
external runtimes work on a machine without the Docker SDK; a model whose runtime cannot
be loaded reads as Offline with the reason instead of breaking the app.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.core.events import redact_text
from lifecycle.core.values import Availability, ExitCallback, Handle, Observation
from lifecycle.runtimes import logfile
from lifecycle.runtimes.protocol import Runtime, RuntimeFailure
from settings import Settings

RuntimeFactory = Callable[[Settings], Runtime]

# Module and class per kind, imported on first use.
_CLASSES: Mapping[RuntimeKind, tuple[str, str]] = {
    RuntimeKind.PROCESS: ("lifecycle.runtimes.process", "ProcessRuntime"),
    RuntimeKind.DOCKER: ("lifecycle.runtimes.docker", "DockerRuntime"),
    RuntimeKind.COMPOSE: ("lifecycle.runtimes.compose", "ComposeRuntime"),
    RuntimeKind.EXTERNAL: ("lifecycle.runtimes.external", "ExternalRuntime"),
    RuntimeKind.SWARM: ("lifecycle.runtimes.swarm", "SwarmRuntime"),
    RuntimeKind.KUBERNETES: ("lifecycle.runtimes.kubernetes", "KubernetesRuntime"),
}


class UnavailableRuntime:
    """Stands in for a runtime that cannot be loaded here; every model on it is Offline."""

    def __init__(self, kind: str, reason: str, settings: Settings) -> None:
        self.kind = kind
        self.reason = reason
        self.settings = settings

    def check(self, spec: ModelSpec) -> Availability:
        return Availability.offline(self.reason)

    def start(self, spec: ModelSpec) -> Handle:
        raise RuntimeFailure(self.reason)

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        raise RuntimeFailure(self.reason)

    def inspect(self, handle: Handle) -> Observation:
        # Unknown is not "gone": reporting it missing would make the reconciler restart it.
        raise RuntimeFailure(self.reason)

    def find_managed(self) -> list[Handle]:
        return []

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        return redact_text(logfile.tail(logfile.log_path(self.settings.log_dir, model_id), tail))


def _import_factory(kind: RuntimeKind) -> RuntimeFactory:
    module_name, class_name = _CLASSES[kind]
    return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]


class Runtimes:
    """The runtimes of one app instance, created lazily and shared by the reconciler and the UI."""

    def __init__(
        self, settings: Settings, factories: Mapping[RuntimeKind, RuntimeFactory] | None = None
    ) -> None:
        self.settings = settings
        self._factories = dict(factories or {})
        self._created: dict[RuntimeKind, Runtime] = {}
        self._on_exit: ExitCallback | None = None
        self._lock = threading.Lock()

    def get(self, kind: RuntimeKind | str) -> Runtime:
        kind = RuntimeKind(kind)
        with self._lock:
            runtime = self._created.get(kind)
            if runtime is None:
                runtime, keep = self._create(kind)
                if keep:
                    self._created[kind] = runtime
            return runtime

    def _create(self, kind: RuntimeKind) -> tuple[Runtime, bool]:
        """The runtime, and whether to keep it (a failure that may pass is retried next time)."""
        try:
            factory = self._factories.get(kind) or _import_factory(kind)
        except ImportError as exc:
            reason = (
                f"the {kind} runtime is not installed here ({exc}); run `pip install -r requirements.txt`"
            )
            return UnavailableRuntime(kind.value, reason, self.settings), True
        try:
            runtime = factory(self.settings)
        except RuntimeFailure as exc:
            return UnavailableRuntime(kind.value, str(exc), self.settings), False
        if self._on_exit is not None and hasattr(runtime, "on_exit"):
            runtime.on_exit = self._on_exit  # type: ignore[attr-defined]
        return runtime, True

    def for_spec(self, spec: ModelSpec) -> Runtime:
        return self.get(spec.runtime)

    def for_handle(self, handle: Handle) -> Runtime:
        return self.get(handle.runtime)

    def created(self) -> list[Runtime]:
        """The runtimes created so far: what shutdown must stop (adoption asks every kind in the catalog)."""
        with self._lock:
            return list(self._created.values())

    def set_on_exit(self, callback: ExitCallback | None) -> None:
        """Have every runtime that reports exits (the process runtime's waiters) call ``callback``."""
        with self._lock:
            self._on_exit = callback
            for runtime in self._created.values():
                if hasattr(runtime, "on_exit"):
                    runtime.on_exit = callback  # type: ignore[attr-defined]
