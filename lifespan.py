"""The app's lifespan: check where the server listens, migrate, build and start the one
lifecycle service, publish it to ``service_access``, and stop everything it manages at exit.

``app.py`` hands this to ``st.App``; nothing else builds a ``LifecycleService`` in the app.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from types import FrameType
from typing import Any, Final

import anyio
from sqlalchemy.engine import make_url

import service_access
from benchmark.jobs import BenchmarkJobs
from benchmark.orphans import close_orphans_at
from db.benchmark_store import BenchmarkStore
from db.lease import DatabaseInUse, InstanceLease
from db.migrate import upgrade_to_head
from db.session import make_engine
from lifecycle.api.auth import check_exposure
from lifecycle.service import LifecycleService
from settings import Settings

log = logging.getLogger(__name__)

# (host, port) the HTTP server really listens on; asked at start, after the socket is bound.
BindProvider = Callable[[], tuple[str, int]]
Lifespan = Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]

EXIT_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _flag_exit_signals() -> Iterator[None]:
    """Set ``stopping`` when the server gets an exit signal, and let the server handle it as before.

    uvicorn lets in-flight requests finish before it runs the lifespan's shutdown, so without
    this a request waiting on a slow load would hold up the exit for its whole timeout. Only
    handlers a server installed are chained; a default handler (no server) is left alone.
    """
    service_access.set_stopping(False)
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (test clients run us elsewhere)
        return
    previous = {sig: signal.getsignal(sig) for sig in EXIT_SIGNALS}
    chained = {sig: handler for sig, handler in previous.items() if callable(handler)}

    def on_exit_signal(signum: int, frame: FrameType | None) -> None:
        service_access.set_stopping(True)
        chained[signal.Signals(signum)](signum, frame)

    for sig in chained:
        signal.signal(sig, on_exit_signal)
    try:
        yield
    finally:
        for sig in chained:
            signal.signal(sig, previous[sig])


class BindMismatch(RuntimeError):
    """DXG_HOST/DXG_PORT ask for one address and the server listens on another."""


def check_bind(settings: Settings, host: str, port: int) -> None:
    """The server must listen where DXG_HOST/DXG_PORT say when they are set, and never on the
    network without a token.

    ``streamlit run`` binds from its own options (flags, ``.streamlit/config.toml``,
    ``STREAMLIT_SERVER_*``) before it imports app.py, so app.py cannot move the socket; it
    can only refuse to serve from the wrong place.
    """
    wanted = [
        (field, flag, expected, actual)
        for field, flag, expected, actual in (
            ("host", "--server.address", settings.host, host),
            ("port", "--server.port", str(settings.port), str(port)),
        )
        if field in settings.model_fields_set and expected != actual
    ]
    if wanted:
        asked = ", ".join(f"DXG_{f.upper()}={e}" for f, _, e, _ in wanted)
        flags = " ".join(f"{flag} {e}" for _, flag, e, _ in wanted)
        raise BindMismatch(
            f"{asked} but the server listens on {host}:{port}; start it with "
            f"`streamlit run app.py {flags}` or `python app.py`"
        )
    check_exposure(host, settings.api_token)


def _start(settings: Settings) -> LifecycleService:
    settings.ensure_dirs()
    upgrade_to_head(settings.db_url)
    close_orphans_at(settings.db_url)
    service = LifecycleService(settings)
    try:
        service.start()
    except BaseException:
        # A half-started service may already run the scheduler or have adopted servers.
        log.exception("lifecycle service failed to start; stopping what it started")
        _shutdown(service)
        raise
    return service


def _take_lease(settings: Settings, host: str, port: int) -> InstanceLease | None:
    """The database's lease, before anything touches it; a second instance stops right here."""
    settings.ensure_dirs()
    return InstanceLease.acquire(settings.db_url, f"{host}:{port}")


def _shutdown(service: LifecycleService) -> None:
    try:
        service.shutdown()
    except Exception:
        log.exception("lifecycle service shutdown failed")


def lifespan(settings: Settings, bind: BindProvider) -> Lifespan:
    """The app's lifespan: check the address, take the database's lease, migrate, build and start
    the service; stop it and free the lease at exit."""

    @asynccontextmanager
    async def run(_app: Any) -> AsyncIterator[dict[str, Any]]:
        host, port = bind()
        try:
            check_bind(settings, host, port)
        except RuntimeError as exc:
            # Said once, plainly, before the server's own startup-failure report.
            log.error("not starting: %s", exc)
            raise
        database = make_url(settings.db_url).render_as_string(hide_password=True)
        log.info("starting on %s:%s (instance %s, database %s)", host, port, settings.instance, database)
        try:
            lease = _take_lease(settings, host, port)
        except DatabaseInUse as exc:
            log.error("not starting: %s", exc)
            raise
        try:
            async with _serving(settings) as state:
                yield state
        finally:
            if lease is not None:
                lease.release()

    return run


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """The service from start to stop, published to ``service_access`` in between. Blocking work
    (migrations, Docker, process scans) stays off the event loop."""
    with _flag_exit_signals():
        service = await anyio.to_thread.run_sync(_start, settings)
        jobs = BenchmarkJobs(service, BenchmarkStore(make_engine(settings.db_url)), settings.db_url)
        service_access.publish(service)
        service_access.publish_benchmarks((jobs, jobs.store))
        try:
            yield {"service": service, "settings": settings}
        finally:
            service_access.publish_benchmarks(None)
            service_access.publish(None)
            # Benchmarks first: each running one is saved as partial while its server still runs.
            await anyio.to_thread.run_sync(jobs.shutdown)
            log.info("stopping the lifecycle service")
            # Not cancellable: the servers we manage must be stopped even when the loop winds down.
            await anyio.to_thread.run_sync(_shutdown, service)
            log.info("lifecycle service stopped")
