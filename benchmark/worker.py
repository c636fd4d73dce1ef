"""``python -m benchmark.worker``: one benchmark run in a process of its own, started by the app.

In the app's process a run shared its event loop's thread with the page scripts and the
reconciler: with a browser tab watching, the runner's loop lag p99 reached 6-140 ms (the limit
is 5 ms) and two models measured side by side slowed each other through the GIL. Here the
runner owns its interpreter. It writes the run to the database itself, as the command line
does; progress and audit events go back to the app (see ``worker_protocol``).

A cancel line, a closed stdin (the app died) or SIGTERM/SIGINT all end the run the same way:
what it measured is saved as partial.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Final, TextIO

from benchmark.execute import Job, execute, new_run
from benchmark.loop_health import CancelToken
from benchmark.runner import Progress
from benchmark.worker_protocol import CANCEL, RunSpec, audit_message, decode_spec, progress_view
from db.benchmark_store import BenchmarkStore
from db.session import make_engine
from lifecycle.core.events import BenchmarkFinished, BenchmarkStarted

log = logging.getLogger("benchmark.worker")

# Progress arrives once per finished request (thousands a second against a fast server); the
# page redraws a few times a second, so one line per level every 50 ms is plenty.
PROGRESS_EVERY_S: Final = 0.05


class Channel:
    """The protocol's write side: whole lines, from any thread."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")) + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()


class AuditToApp:
    """The ``AuditSink`` ``execute`` writes to: the app records the event in the model's stream."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def record_benchmark(
        self, model_id: str, event: BenchmarkStarted | BenchmarkFinished, actor: str = "benchmark"
    ) -> None:
        self._channel.send(audit_message(model_id, event))


class ProgressThrottle:
    """Forward a level's progress at most every ``PROGRESS_EVERY_S``, and always its last word."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._sent_at: dict[str, float] = {}
        self._pending: dict[str, Progress] = {}

    def __call__(self, update: Progress) -> None:
        now = time.monotonic()
        finished = update.total is not None and update.done >= update.total
        if finished or now - self._sent_at.get(update.label, 0.0) >= PROGRESS_EVERY_S:
            self._sent_at[update.label] = now
            self._pending.pop(update.label, None)
            self._channel.send({"progress": progress_view(update)})
        else:
            self._pending[update.label] = update

    def flush(self) -> None:
        for update in self._pending.values():
            self._channel.send({"progress": progress_view(update)})
        self._pending.clear()


def _listen(stdin: TextIO, cancel: CancelToken) -> None:
    for line in stdin:
        if line.strip() == CANCEL:
            break
    cancel.cancel()  # a cancel line, or EOF: the app is gone and nobody will read the result


def run(spec: RunSpec, channel: Channel, cancel: CancelToken) -> dict[str, Any]:
    engine = make_engine(spec.db_url)
    try:
        job = Job(spec.target, spec.workload, spec.server_meta, spec.catalog_entry)
        record = new_run(job)
        record.run_id = spec.run_id  # the id the app answered the submit with
        progress = ProgressThrottle(channel)
        done = execute(
            job, BenchmarkStore(engine), AuditToApp(channel), progress=progress, cancel=cancel, run=record
        )
        progress.flush()
        return {"status": done.status, "error": done.error}
    finally:
        engine.dispose()


def main() -> int:
    # The protocol owns the real stdout; a library's stray print goes to stderr (the app's log).
    channel = Channel(os.fdopen(os.dup(sys.stdout.fileno()), "w"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    spec = decode_spec(sys.stdin.readline())
    cancel = CancelToken()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: cancel.cancel())
    threading.Thread(target=_listen, args=(sys.stdin, cancel), name="cancel-listener", daemon=True).start()
    channel.send({"done": run(spec, channel, cancel)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
