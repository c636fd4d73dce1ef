"""What the lifecycle service tests share: a catalog of simulator processes, settings with short
figures, a started service that is always shut down, and readers of the recorded events."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psutil

from lifecycle.core.events import Event, RecordedEvent, model_stream
from lifecycle.core.projection import fold
from lifecycle.runtimes.registry import Runtimes
from lifecycle.service import LifecycleService
from settings import Settings
from tests.catalogs import sim_process
from tests.settings_support import FAST as FAST  # re-exported: the lifecycle tests import them from here
from tests.settings_support import make_settings as make_settings
from tests.support import free_port, instance_processes, pid_alive, wait_until

# The stream of a model that was loaded, crashed once and came back.
LOADED_CRASHED_RESTARTED = [
    "LoadRequested",
    "StartIssued",
    "ReadyObserved",
    "Crashed",
    "RestartScheduled",
    "StartIssued",
    "ReadyObserved",
]


def sim_model(
    model_id: str, *sim_args: str, port: int | None = None, startup_s: float = 0.0, **fields: Any
) -> dict[str, Any]:
    """A catalog entry that runs the simulator as a process (``fields`` override the entry's)."""
    return {**sim_process(model_id, port or free_port(), *sim_args, startup_s=startup_s), **fields}


@contextlib.contextmanager
def running_service(settings: Settings, runtimes: Runtimes | None = None) -> Iterator[LifecycleService]:
    """A started service; shut down afterwards, then checked: projection == fold of events."""
    service = LifecycleService(settings, runtimes=runtimes)
    service.start()
    try:
        yield service
    finally:
        service.shutdown()
    assert_projection_matches_events(service)


def assert_projection_matches_events(service: LifecycleService) -> None:
    store = service.store
    for model_id, state in store.model_states().items():
        assert fold(store.read_stream(model_stream(model_id))) == state, model_id


def events(service: LifecycleService, model_id: str) -> list[RecordedEvent]:
    """The model's events, oldest first."""
    return service.store.read_stream(model_stream(model_id))


def desired(service: LifecycleService, model_id: str) -> str | None:
    state = service.store.model_state(model_id)
    return None if state is None else state.desired


def types(service: LifecycleService, model_id: str) -> list[str]:
    return [e.type for e in events(service, model_id)]


def of_type(service: LifecycleService, model_id: str, event_type: type[Event]) -> list[Any]:
    return [e.event for e in events(service, model_id) if isinstance(e.event, event_type)]


def wait_for_types(
    service: LifecycleService, model_id: str, expected: Sequence[str], timeout_s: float
) -> list[str]:
    """Wait until the stream starts with ``expected`` (more may follow)."""
    return wait_until(
        lambda: (seen := types(service, model_id))[: len(expected)] == list(expected) and seen,
        timeout_s,
        what=f"{model_id} events {list(expected)} (have {types(service, model_id)})",
    )


def wait_for_count(
    service: LifecycleService, model_id: str, event_type: str, count: int, timeout_s: float
) -> None:
    wait_until(
        lambda: types(service, model_id).count(event_type) >= count,
        timeout_s,
        what=f"{count} x {event_type} for {model_id} (have {types(service, model_id)})",
    )


def servers_of(settings: Settings, model_id: str) -> list[psutil.Process]:
    """Live processes carrying this instance's marker for the model: what must never be two."""
    return instance_processes(settings.instance, model_id)


def pid_gone(pid: int) -> bool:
    return not pid_alive(pid)


def wait_passes(service: LifecycleService, count: int, timeout_s: float = 10.0) -> None:
    """Let the reconciler run ``count`` more passes: "nothing happened" is then a fact, not a hope."""
    target = service.reconciler.passes + count
    wait_until(lambda: service.reconciler.passes >= target, timeout_s, what=f"{count} reconciler passes")
