"""Benchmarks that belong to the app, not to a page: queued per model, run in the background.

A page reload, a closed tab or a second browser only changes who is watching.
One model runs one benchmark at a time (two at once would measure each other);
others wait in that model's queue, and different models run side by side. Each
run goes through ``benchmark.execute`` like the command line's, in a process of its own
(``benchmark.worker``: the page scripts and the reconciler never share its event loop or
its GIL), so it is stored as it goes and lands in the model's audit stream. At exit the
app cancels them all: each is saved as partial before the servers are stopped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from benchmark.loop_health import CancelToken
from benchmark.records import RunStatus
from benchmark.run_process import RunProcess
from benchmark.server_info import TargetError
from benchmark.targets import catalog_entry, model_target
from benchmark.worker_protocol import RunSpec
from benchmark.workload import Workload
from db.benchmark_store import BenchmarkStore
from lifecycle.core.errors import LifecycleError
from lifecycle.service import LifecycleService

log = logging.getLogger(__name__)

QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
CANCELLED: Final = "cancelled"  # before it started: nothing was measured or stored
LOAD_TIMEOUT_S: Final = 900.0
STOP_WAIT_S: Final = 10.0


class ModelNotLoaded(LifecycleError):
    status_code = 409
    error = "not_loaded"


class UnknownJob(LifecycleError, LookupError):
    status_code = 404
    error = "unknown_run"


@dataclass
class JobState:
    """One submitted run as the page and the API show it while it is queued or running."""

    run_id: str
    model_id: str
    workload: Workload
    actor: str
    load: bool
    submitted_at: float = field(default_factory=time.time)
    state: str = QUEUED
    status: str | None = None  # the stored run's status once it has one
    error: str | None = None
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # per level label
    cancel: CancelToken = field(default_factory=CancelToken)

    def view(self, position: int | None = None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_id": self.model_id,
            "kind": self.workload.kind,
            "workload": self.workload.summary(),
            "state": self.state,
            "status": self.status,
            "error": self.error,
            "submitted_at": self.submitted_at,
            "queue_position": position,
            "progress": list(self.progress.values()),
        }


class BenchmarkJobs:
    def __init__(self, service: LifecycleService, store: BenchmarkStore, db_url: str) -> None:
        self._service = service
        self.store = store
        self._db_url = db_url  # where each run's process writes it
        self._processes: dict[str, RunProcess] = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}
        self._queues: dict[str, deque[JobState]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closed = False

    # --- commands ----------------------------------------------------------------------------

    def check_loaded(self, model_id: str) -> None:
        """Refuse a model that is unknown (404) or not loaded (409)."""
        status = self._service.status_of(model_id)
        if not status.loaded:
            raise ModelNotLoaded(
                f"{model_id} is not loaded ({status.status}); load it first, or ask to load it "
                "with the run (?load=true)"
            )

    def submit(self, model_id: str, workload: Workload, *, load: bool = False, actor: str = "ui") -> JobState:
        """Queue a run of ``workload`` on the model; refused when it is not loaded (unless ``load``)."""
        status = self._service.status_of(model_id)  # UnknownModel (404) for an id not in the catalog
        if not load:
            self.check_loaded(model_id)
        elif not status.loaded:
            self._service.load(model_id, actor=actor)
        job = JobState(uuid.uuid4().hex[:12], model_id, workload, actor, load)
        with self._lock:
            if self._closed:
                raise LifecycleError("the app is stopping; no new benchmark runs")
            self._jobs[job.run_id] = job
            self._queues.setdefault(model_id, deque()).append(job)
            worker = self._workers.get(model_id)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(
                    target=self._drain, args=(model_id,), name=f"bench-{model_id}", daemon=True
                )
                self._workers[model_id] = worker
                worker.start()
        return job

    def cancel(self, run_id: str) -> JobState:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                raise UnknownJob(f"no queued or running benchmark {run_id!r}")
            if job.state == QUEUED:
                self._queues[job.model_id].remove(job)
                job.state = CANCELLED
            job.cancel.cancel()
            return job

    def shutdown(self, wait_s: float = STOP_WAIT_S) -> None:
        """Cancel everything; running runs are saved as partial before this returns (or gives up)."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.state == QUEUED:
                    job.state = CANCELLED
                job.cancel.cancel()
            for queue in self._queues.values():
                queue.clear()
            workers = list(self._workers.values())
        deadline = time.monotonic() + wait_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = list(self._processes.values())
        for process in stuck:  # it did not save within the bound; the servers must stop anyway
            log.warning("benchmark %s did not stop within %.0f s; killing it", process.spec.run_id, wait_s)
            process.kill()
        if stuck:  # what its levels saved stays, as partial
            reason = f"the app stopped and the run did not end within {wait_s:.0f} s"
            self.store.mark_interrupted([process.spec.run_id for process in stuck], reason)

    # --- reads -------------------------------------------------------------------------------

    def active(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """Queued and running runs, oldest first, each with its place in its model's queue."""
        with self._lock:
            views = []
            for job in self._jobs.values():
                if job.state not in (QUEUED, RUNNING) or (model_id and job.model_id != model_id):
                    continue
                queue = list(self._queues.get(job.model_id, ()))
                position = queue.index(job) + 1 if job in queue else None
                views.append(job.view(position))
            return views

    def job(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(run_id)
        return None if job is None else self.view(job)

    def view(self, job: JobState) -> dict[str, Any]:
        with self._lock:
            queue = list(self._queues.get(job.model_id, ()))
            return job.view(queue.index(job) + 1 if job in queue else None)

    def busy(self, model_id: str) -> bool:
        """A run is queued or running on the model (the page asks before unloading it)."""
        return bool(self.active(model_id))

    # --- the worker --------------------------------------------------------------------------

    def _next(self, model_id: str) -> JobState | None:
        with self._lock:
            queue = self._queues.get(model_id)
            if not queue or self._closed:
                self._workers.pop(model_id, None)
                return None
            job = queue.popleft()
            job.state = RUNNING
            return job

    def _drain(self, model_id: str) -> None:
        while (job := self._next(model_id)) is not None:
            try:
                self._run(job)
            except Exception as exc:  # one bad run must not stop the model's queue
                log.exception("benchmark %s on %s failed", job.run_id, model_id)
                job.error = f"the run failed: {exc!r}"
            finally:
                if job.state != CANCELLED:  # cancelled before it measured anything: nothing stored
                    job.state = DONE

    def _run(self, job: JobState) -> None:
        if job.load and not self._wait_loaded(job):
            return
        if job.cancel.cancelled:
            job.state = CANCELLED
            return
        try:
            target, meta = model_target(self._service, job.model_id)
        except TargetError as exc:
            job.status, job.error = RunStatus.FAILED, str(exc)
            return
        spec = RunSpec(
            job.run_id, self._db_url, target, job.workload, meta, catalog_entry(self._service, job.model_id)
        )
        process = RunProcess(
            spec, audit=self._service, runs=self.store, on_progress=self._on_progress(job), cancel=job.cancel
        )
        with self._lock:
            self._processes[job.run_id] = process
        try:
            with self._service.activity.using(job.model_id):  # a model being measured is not idle
                ended = process.run()
        finally:
            with self._lock:
                self._processes.pop(job.run_id, None)
        job.status, job.error = ended.status, ended.error

    def _wait_loaded(self, job: JobState) -> bool:
        """Wait for the model to be ready; a cancel (or the app's exit, which cancels) ends it."""
        status = self._service.wait(
            job.model_id, "ready", LOAD_TIMEOUT_S, abandon=lambda: job.cancel.cancelled
        )
        if job.cancel.cancelled:
            job.state = CANCELLED
            return False
        if not status.loaded:
            job.status, job.error = RunStatus.FAILED, f"{job.model_id} did not load: {status.status}"
        return status.loaded

    @staticmethod
    def _on_progress(job: JobState) -> Callable[[dict[str, Any]], None]:
        def on_progress(update: dict[str, Any]) -> None:
            job.progress[str(update.get("label"))] = update

        return on_progress
