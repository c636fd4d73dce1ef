"""Where pages and the API find the one lifecycle service of this process.

Streamlit re-runs page scripts on every interaction and re-imports them on edits, so a page
that built its own scheduler, threads or engines would duplicate them. Pages call
``get_service()`` instead; the app's lifespan (``lifespan.py``) is the only place that builds
the service, publishes it here, and takes it away at exit. This module imports nothing of the
service at run time, so the UI does not drag in the database migrations or the runtimes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.jobs import BenchmarkJobs
    from db.benchmark_store import BenchmarkStore
    from lifecycle.service import LifecycleService

_lock = threading.Lock()
_service: LifecycleService | None = None
_benchmarks: tuple[BenchmarkJobs, BenchmarkStore] | None = None
_stopping = threading.Event()


class ServiceNotRunning(RuntimeError):
    """Asked for the service outside the app's lifespan (before start, after stop, or no app)."""


def get_service() -> LifecycleService:
    with _lock:
        service = _service
    if service is None:
        raise ServiceNotRunning(
            "the lifecycle service is not running: start the app with `streamlit run app.py` "
            "(or `make run`), which builds it at start and stops it at exit"
        )
    return service


def get_benchmarks() -> tuple[BenchmarkJobs, BenchmarkStore]:
    """The app's background benchmark runs and their store, published next to the service."""
    with _lock:
        benchmarks = _benchmarks
    if benchmarks is None:
        raise ServiceNotRunning("the benchmark service is not running: it starts and stops with the app")
    return benchmarks


def publish_benchmarks(benchmarks: tuple[BenchmarkJobs, BenchmarkStore] | None) -> None:
    global _benchmarks
    with _lock:
        _benchmarks = benchmarks


def stopping() -> bool:
    """True once the process was told to exit (SIGINT/SIGTERM): long API waits end early."""
    return _stopping.is_set()


def publish(service: LifecycleService | None) -> None:
    """Make ``service`` the one ``get_service`` returns (None: there is none any more)."""
    global _service
    with _lock:
        _service = service


def set_stopping(flag: bool) -> None:
    if flag:
        _stopping.set()
    else:
        _stopping.clear()
