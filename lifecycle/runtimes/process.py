"""Models started as local processes from the catalog's ``load_command``.

The command is split like a shell would but runs without one, in its own session (so its
own process group), with stdout and stderr going straight into ``logs/{id}.log``: the
server keeps logging when the app dies, and a later app instance can adopt it.

Ownership is proven twice before we touch a process another app run started: the pidfile's
start time must match the pid's, and the process's environment must carry this instance's
marker. So two app instances on one machine never adopt or stop each other's servers.

Exit codes follow the shell convention (``128 + signal`` for a death by signal, e.g. 137 for
SIGKILL), the same numbers Docker reports. Only the app that spawned a process can reap it,
so for an adopted process (started by an earlier app run) the exit code is unknown: None.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lifecycle.catalog import ModelSpec, RuntimeKind
from lifecycle.core import secrets as secrets_module
from lifecycle.core.events import redact, redact_text
from lifecycle.core.values import Availability, ExitCallback, Handle, Observation
from lifecycle.runtimes import log_relay, logfile, proctree
from lifecycle.runtimes.pidfile import PidDir, PidRecord
from lifecycle.runtimes.ports import port_holder, port_is_free
from lifecycle.runtimes.protocol import (
    AlreadyRunning,
    ExecutableMissing,
    ModelFilesMissing,
    PortInUse,
    RuntimeFailure,
    WorkdirMissing,
    env_problem,
    server_env,
)
from settings import Settings

log = logging.getLogger(__name__)

# How long an exit waits for the log relay to write the server's last lines.
RELAY_DRAIN_S = 2.0
# Where ``python -m lifecycle.runtimes.log_relay`` is found.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_ENV = "DXG_INSTANCE"
MODEL_ENV = "DXG_MODEL"
# Unique per start: finds every descendant of one launch, even one that left the process group.
LAUNCH_ENV = "DXG_LAUNCH"

# psutil derives start times from the boot time, which moves a little with clock updates.
CREATE_TIME_TOLERANCE_S = 1.0
# How long SIGKILLed processes get to disappear before stop() gives up and says so.
KILL_WAIT_S = 5.0


def shell_exit_code(returncode: int) -> int:
    """Popen's ``-N`` for "killed by signal N" as the shell and Docker write it: ``128 + N``."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class _Child:
    """A process this app run spawned; only we can reap it and learn its exit code."""

    popen: subprocess.Popen[bytes]
    handle: Handle
    relay: subprocess.Popen[bytes] | None = None  # log_relay, when the server's output is masked
    exited: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None


class ProcessRuntime:
    kind = RuntimeKind.PROCESS.value

    def __init__(
        self, settings: Settings, *, python: str | None = None, on_exit: ExitCallback | None = None
    ) -> None:
        self.settings = settings
        self.python = python
        # Called as on_exit(model_id, exit_code) from the waiter thread, for every exit of a
        # child, also the ones stop() caused; the reconciler sets it to wake up at once.
        self.on_exit = on_exit
        self.pids = PidDir(settings.run_dir, settings.instance)
        self._children: dict[int, _Child] = {}
        self._lock = threading.Lock()

    # --- can it start? -------------------------------------------------------------------------

    def check(self, spec: ModelSpec) -> Availability:
        """Available, or Offline with the first thing that would make ``start`` fail.

        A server of this model that is already running holds its port, so it reads as
        "port in use" here: ask ``inspect`` about running servers, not ``check``.
        """
        problem = self._preflight(spec)
        return Availability.ok() if problem is None else Availability.offline(str(problem))

    def _preflight(self, spec: ModelSpec) -> RuntimeFailure | None:
        if spec.load_command is None:
            return RuntimeFailure(f"model {spec.id} has no load_command, so the app cannot start it")
        # A second server of the same model would only fight the first for its port and GPU.
        record = self.pids.read(spec.id)
        if record and self._owned(record.model_id, record.pid, record.create_time, record.launch):
            return AlreadyRunning(spec.id, f"pid {record.pid}")
        if spec.model_path is not None and not spec.model_path.exists():
            return ModelFilesMissing(str(spec.model_path))
        if spec.workdir is not None and not spec.workdir.is_dir():
            return WorkdirMissing(spec.workdir)
        program = self.argv(spec)[0]
        if _find_program(program, spec.workdir, self._environment(spec, launch="")) is None:
            return ExecutableMissing(program, spec.workdir)
        problem = env_problem(spec)
        if problem is not None:
            return problem
        # A wildcard bind is reachable on loopback; probe there.
        host = "127.0.0.1" if spec.host in ("0.0.0.0", "") else spec.host  # noqa: S104
        if not port_is_free(spec.port, host):
            return PortInUse(spec.port, port_holder(spec.port))
        return None

    def argv(self, spec: ModelSpec) -> list[str]:
        return spec.argv(python=self.python)

    def _environment(self, spec: ModelSpec, launch: str) -> dict[str, str]:
        return {
            **os.environ,
            **server_env(spec),
            INSTANCE_ENV: self.settings.instance,
            MODEL_ENV: spec.id,
            LAUNCH_ENV: launch,
        }

    # --- start ---------------------------------------------------------------------------------

    def start(self, spec: ModelSpec) -> Handle:
        problem = self._preflight(spec)
        if problem is not None:
            raise problem
        argv = self.argv(spec)
        launch = secrets.token_hex(8)
        path = logfile.log_path(self.settings.log_dir, spec.id)
        logfile.rotate_if_large(path)
        shown = shlex.join(redact(argv))
        env_names = ", ".join(sorted(spec.env)) or "none"
        logfile.write_note(
            path,
            f"starting {spec.id}: {shown} (cwd {spec.workdir or Path.cwd()}, "
            f"catalog env: {env_names}, instance {self.settings.instance})",
        )
        env = self._environment(spec, launch)
        handed = secrets_module.secret_env_values(spec.env, server_env(spec))
        relay: subprocess.Popen[bytes] | None = None
        try:
            if handed:
                popen, relay = self._spawn_masked(argv, spec, env, path, handed)
            else:
                with logfile.open_append(path) as out:
                    popen = subprocess.Popen(
                        argv,
                        cwd=spec.workdir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
        except OSError as exc:  # preflight found it, but it may have gone or lack the x bit
            logfile.write_note(path, f"start of {spec.id} failed: {exc.strerror or exc}")
            raise RuntimeFailure(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc

        # Not reaped before the waiter runs, so even a child that already died still has its stat.
        create_time = psutil.Process(popen.pid).create_time()
        handle = Handle(
            runtime=self.kind,
            model_id=spec.id,
            ref=str(popen.pid),
            started_at=create_time,
            extra={"pgid": str(popen.pid), "launch": launch, "instance": self.settings.instance},
        )
        record = PidRecord(
            pid=popen.pid,
            pgid=popen.pid,
            create_time=create_time,
            model_id=spec.id,
            instance=self.settings.instance,
            launch=launch,
            argv=tuple(redact(argv)),
        )
        self.pids.write(record)
        child = _Child(popen, handle, relay)
        with self._lock:
            # Earlier runs of this model are over (see AlreadyRunning); forget them.
            for old_pid in [p for p, c in self._children.items() if c.handle.model_id == spec.id]:
                del self._children[old_pid]
            self._children[popen.pid] = child
        threading.Thread(target=self._wait, args=(child,), name=f"wait-{spec.id}", daemon=True).start()
        logfile.write_note(path, f"started {spec.id} as pid {popen.pid}")
        return handle

    @staticmethod
    def _spawn_masked(
        argv: list[str], spec: ModelSpec, env: dict[str, str], path: Path, handed: list[str]
    ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """The server with its output through ``log_relay``, which masks the secrets it was handed
        before anything reaches the log file (a server may print them in any shape)."""
        popen = subprocess.Popen(
            argv,
            cwd=spec.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert popen.stdout is not None
        relay_env = {"PATH": os.environ.get("PATH", ""), log_relay.SECRETS_ENV: json.dumps(handed)}
        try:
            relay = subprocess.Popen(
                [sys.executable, "-m", "lifecycle.runtimes.log_relay", str(path.resolve())],
                cwd=PROJECT_ROOT,
                env=relay_env,
                stdin=popen.stdout,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            popen.stdout.close()  # the relay holds the read end now; the app must not
        return popen, relay

    def _wait(self, child: _Child) -> None:
        code = shell_exit_code(child.popen.wait())
        if child.relay is not None:
            # Its last lines (often why it died) reach the log before the exit is noted and a
            # log tail is taken; a child the server left holding the pipe keeps the relay open.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.relay.wait(RELAY_DRAIN_S)
        model_id = child.handle.model_id
        # Bookkeeping first: whoever sees the exit (inspect, stop, on_exit) then also sees
        # the pidfile gone and the exit noted in the log.
        self.pids.remove(model_id, child.popen.pid)
        self._note(child.handle, f"{model_id} (pid {child.popen.pid}) exited with code {code}")
        child.exit_code = code
        child.exited.set()
        callback = self.on_exit
        if callback is not None:
            try:
                callback(model_id, code)
            except Exception:  # a broken callback must not kill the waiter silently
                log.exception("on_exit callback failed for %s", model_id)

    # --- observe -------------------------------------------------------------------------------

    def inspect(self, handle: Handle) -> Observation:
        child = self._child(handle)
        if child is not None:
            if child.exited.is_set():
                return Observation(running=False, exit_code=child.exit_code, started_at=handle.started_at)
            return Observation(running=True, started_at=handle.started_at)
        if self._leader(handle, None) is None:
            # Adopted and gone: whoever reaped it took the exit code along.
            return Observation(running=False, started_at=handle.started_at, missing=True)
        return Observation(running=True, started_at=handle.started_at)

    def find_managed(self) -> list[Handle]:
        """This instance's live servers according to its pidfiles; stale pidfiles are removed."""
        records, broken = self.pids.read_all()
        for path in broken:
            path.unlink(missing_ok=True)
        handles: list[Handle] = []
        for record in records:
            if record.instance != self.settings.instance:
                self.pids.remove(record.model_id, record.pid)
                continue
            if self._owned(record.model_id, record.pid, record.create_time, record.launch) is None:
                self.pids.remove(record.model_id, record.pid)
                continue
            handles.append(
                Handle(
                    runtime=self.kind,
                    model_id=record.model_id,
                    ref=str(record.pid),
                    started_at=record.create_time,
                    extra={"pgid": str(record.pgid), "launch": record.launch, "instance": record.instance},
                )
            )
        return handles

    def logs(self, handle: Handle | None, model_id: str, tail: int) -> str:
        # Servers print what they like, tokens included; nothing we hand out may carry one.
        return redact_text(logfile.tail(self._log(model_id), tail))

    # --- stop ----------------------------------------------------------------------------------

    def stop(self, handle: Handle, grace_s: float) -> Observation:
        """SIGTERM to the whole server (group, descendants, marker holders), SIGKILL after ``grace_s``."""
        child = self._child(handle)
        pid = int(handle.ref)
        launch = handle.extra.get("launch")
        pgid = int(handle.extra.get("pgid", pid))
        leader = self._leader(handle, child)
        marker = (LAUNCH_ENV, launch) if launch else None
        # The group id is only trusted while a verified process holds it: a stale handle's
        # pgid may name an unrelated group by now. The launch marker is trusted by itself.
        # Taken before any signal: once the leader dies its children are re-parented and the
        # tree can no longer be walked from it.
        members = proctree.collect([leader] if leader else [], pgid if leader else None, marker)
        if members:
            self._note(handle, f"stopping {handle.model_id} (pid {pid}): SIGTERM, SIGKILL after {grace_s:g}s")
            proctree.signal_all(members.values(), pgid, signal.SIGTERM)
            if not proctree.wait_for(lambda: proctree.all_gone(members.values()), grace_s):
                # Whatever forked during the grace period is caught by the group and the marker.
                group = pgid if proctree.holds_group(members.values(), pgid) else None
                members.update(proctree.collect([], group, marker))
                left = sorted(pid for pid, proc in members.items() if proctree.is_alive(proc))
                self._note(handle, f"{handle.model_id} still running after {grace_s:g}s: SIGKILL to {left}")
                proctree.signal_all(members.values(), pgid, signal.SIGKILL)
                if not proctree.wait_for(lambda: proctree.all_gone(members.values()), KILL_WAIT_S):
                    left = sorted(pid for pid, proc in members.items() if proctree.is_alive(proc))
                    raise RuntimeFailure(f"processes {left} of {handle.model_id} survived SIGKILL")
        if child is not None:
            # The waiter reaps within moments of the death; its code is the answer.
            child.exited.wait(KILL_WAIT_S)
        self.pids.remove(handle.model_id, pid)
        code = self.inspect(handle).exit_code
        how = f"exit code {code}" if code is not None else "exit code unknown: an earlier app run started it"
        self._note(handle, f"stopped {handle.model_id} ({how})")
        return Observation(running=False, exit_code=code, started_at=handle.started_at)

    # --- helpers -------------------------------------------------------------------------------

    def _child(self, handle: Handle) -> _Child | None:
        with self._lock:
            child = self._children.get(int(handle.ref))
        if child is None or abs(child.handle.started_at - handle.started_at) > CREATE_TIME_TOLERANCE_S:
            return None
        return child

    def _leader(self, handle: Handle, child: _Child | None) -> psutil.Process | None:
        if child is not None and not child.exited.is_set():
            # Our own child needs no marker check: Popen proves it (it may have reset its env).
            with contextlib.suppress(psutil.NoSuchProcess):
                return psutil.Process(child.popen.pid)
            return None
        return self._owned(handle.model_id, int(handle.ref), handle.started_at, handle.extra.get("launch"))

    def _owned(
        self, model_id: str, pid: int, create_time: float, launch: str | None
    ) -> psutil.Process | None:
        """The live process behind a record, if it is still the one this instance started."""
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
                return None  # the pid was reused
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        if not proctree.is_alive(proc):
            return None
        if not _carries_marker(proctree.environ_of(proc), self.settings.instance, model_id, launch):
            return None
        return proc

    def _log(self, model_id: str) -> Path:
        return logfile.log_path(self.settings.log_dir, model_id)

    def _note(self, handle: Handle, text: str) -> None:
        with contextlib.suppress(OSError):
            logfile.write_note(self._log(handle.model_id), text)


def _carries_marker(environ: Mapping[str, str], instance: str, model_id: str, launch: str | None) -> bool:
    if environ.get(INSTANCE_ENV) != instance or environ.get(MODEL_ENV) != model_id:
        return False
    return launch is None or environ.get(LAUNCH_ENV) == launch


def _find_program(program: str, workdir: Path | None, env: Mapping[str, str]) -> str | None:
    """Where ``program`` would be executed from, as Popen resolves it; None if nowhere."""
    if os.sep in program:
        path = Path(program)
        if not path.is_absolute() and workdir is not None:
            path = workdir / path
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))
