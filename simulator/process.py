"""Run ``python -m simulator`` as a child process and follow its log events.

Used by tests and benchmark calibration: they wait on the simulator's own
``SIM_EVENT`` lines (a condition) instead of sleeping for a guessed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from simulator.events import SimEvent, parse_event

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class SimulatorProcess:
    def __init__(
        self,
        engine: str,
        model_id: str,
        port: int,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        python: str = sys.executable,
    ) -> None:
        self.engine = engine
        self.model_id = model_id
        self.host = host
        self.port = port
        self.argv = [
            python,
            "-m",
            "simulator",
            *("--engine", engine, "--model-id", model_id, "--port", str(port), "--host", host),
            *args,
        ]
        self.spawned_at = 0.0  # epoch just before the spawn
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._events: list[SimEvent] = []
        self._eof = False
        self._cond = threading.Condition()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError("start() the simulator first")
        return self._proc

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def start(self) -> SimulatorProcess:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")])),
        }
        self.spawned_at = time.time()
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
        stream = self._proc.stdout
        if stream is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
            raise RuntimeError("no stdout pipe")
        threading.Thread(
            target=self._follow, args=(stream,), name=f"sim-log-{self.port}", daemon=True
        ).start()
        return self

    def _follow(self, stream: IO[str]) -> None:
        for line in stream:
            event = parse_event(line)
            with self._cond:
                self._lines.append(line)
                if event is not None:
                    self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def event(self, name: str) -> SimEvent | None:
        with self._cond:
            return next((e for e in self._events if e.name == name), None)

    def wait_event(self, name: str, timeout_s: float = 10.0) -> SimEvent:
        """The first ``name`` event, waiting for it; fails early if the process's output ends."""
        with self._cond:
            self._cond.wait_for(lambda: self._find(name) is not None or self._eof, timeout_s)
            found = self._find(name)
        if found is None:
            state = "exited" if self._eof else f"no {name!r} within {timeout_s:g} s"
            raise TimeoutError(f"simulator {state}; output so far:\n{self.output}")
        return found

    def wait_output_closed(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._eof, timeout_s)

    def _find(self, name: str) -> SimEvent | None:
        return next((e for e in self._events if e.name == name), None)

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout_s)
        self.wait_output_closed(timeout_s)
        return code

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it is still alive after ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(timeout_s)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
