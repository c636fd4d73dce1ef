"""The app's side of a benchmark run in its own process (``benchmark.worker``).

The calling thread reads the process's lines until it ends: progress goes to ``on_progress``,
audit events to the lifecycle service (the one writer of the models' streams). A cancel on the
run's token becomes a ``cancel`` line. A process that dies without its last word (killed, out
of memory, a bug) is reported with its exit code and its last lines of stderr, and its run is
closed as partial so nothing stays "running".
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from benchmark.execute import AuditSink, record_audit
from benchmark.loop_health import CancelToken
from benchmark.records import RunStatus
from benchmark.worker_protocol import CANCEL, ProtocolError, RunSpec, audit_event, decode_message, encode_spec

log = logging.getLogger(__name__)

STDERR_KEPT: Final = 20  # lines of a dead process's stderr quoted in its run's error
COMMAND: Final = (sys.executable, "-m", "benchmark.worker")
# The app may run from another directory (a relative database path is resolved against its
# working directory, so that stays); the package is found through the path instead.
PROJECT_ROOT: Final = str(Path(__file__).resolve().parents[1])


class RunCloser(Protocol):
    def mark_interrupted(self, run_ids: Any = ..., reason: str = ...) -> int: ...


@dataclass(frozen=True)
class Ended:
    status: str
    error: str | None


class RunProcess:
    def __init__(
        self,
        spec: RunSpec,
        *,
        audit: AuditSink,
        runs: RunCloser,
        on_progress: Callable[[dict[str, Any]], None],
        cancel: CancelToken,
    ) -> None:
        self.spec = spec
        self._audit, self._runs, self._on_progress = audit, runs, on_progress
        self._cancel = cancel
        self._stderr: deque[str] = deque(maxlen=STDERR_KEPT)
        self._write_lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def run(self) -> Ended:
        """Start the process and follow it to its end; returns how the run ended."""
        # Its own session: a Ctrl+C in the app's terminal reaches the app, which cancels the run
        # in order (saved as partial, then the servers stop), not the run behind its back.
        self._proc = proc = subprocess.Popen(
            COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            env=_env(),
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        errors = threading.Thread(target=self._drain_stderr, args=(proc.stderr,), daemon=True)
        errors.start()
        self._write(encode_spec(self.spec))
        self._cancel.on_cancel(lambda: self._write(CANCEL))
        ended: Ended | None = None
        for line in proc.stdout:
            ended = self._handle(line) or ended
        proc.wait()
        errors.join(timeout=5)
        if ended is None:
            return self._died(proc.returncode)
        return ended

    def kill(self) -> None:
        """For the app's exit when the run did not stop within its bound."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def _write(self, line: str) -> None:
        with self._write_lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.poll() is not None:
                return
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # it ended meanwhile; nothing left to tell it
                pass

    def _handle(self, line: str) -> Ended | None:
        try:
            kind, body = decode_message(line)
            if kind == "progress":
                self._on_progress(body)
            elif kind == "audit":
                model_id, event = audit_event(body)
                record_audit(self._audit, model_id, event)
            else:
                return Ended(str(body.get("status")), body.get("error"))
        except ProtocolError as exc:
            log.warning("benchmark %s: %s", self.spec.run_id, exc)
        return None

    def _drain_stderr(self, stream: Any) -> None:
        for line in stream:
            text = line.rstrip()
            self._stderr.append(text)
            log.info("benchmark %s: %s", self.spec.run_id, text)

    def _died(self, code: int | None) -> Ended:
        tail = "; ".join(line for line in self._stderr if line)[-1000:]
        error = f"the benchmark process ended without a result (exit code {code})" + (
            f": {tail}" if tail else ""
        )
        log.error("benchmark %s: %s", self.spec.run_id, error)
        try:
            closed = self._runs.mark_interrupted([self.spec.run_id], error)
        except Exception:
            log.warning("could not close run %s as partial", self.spec.run_id, exc_info=True)
            closed = 0
        # Stored as running before it died: it keeps the levels it saved, as partial.
        return Ended(RunStatus.PARTIAL if closed else RunStatus.FAILED, error)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, env.get("PYTHONPATH")) if p)
    return env
