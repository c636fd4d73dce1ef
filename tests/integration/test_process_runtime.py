"""The process runtime with real processes: the simulator, SIGTERM-proof trees, pidfiles.

Servers are started from ``load_command`` specs exactly as the catalog would give them and
watched over HTTP with the engines' own probes. Waits are on conditions, never on sleeps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from lifecycle.catalog import ModelSpec
from lifecycle.core.values import Handle
from lifecycle.observe.probes import probe_ready
from lifecycle.runtimes.logfile import log_path
from lifecycle.runtimes.ports import port_is_free
from lifecycle.runtimes.process import (
    INSTANCE_ENV,
    LAUNCH_ENV,
    MODEL_ENV,
    ProcessRuntime,
)
from lifecycle.runtimes.protocol import (
    AlreadyRunning,
    EnvMissing,
    ExecutableMissing,
    ModelFilesMissing,
    PortInUse,
    PrematureExit,
    Runtime,
    StartTimeout,
)
from lifecycle.runtimes.registry import Runtimes, UnavailableRuntime
from settings import Settings
from simulator.events import parse_event
from tests.integration.readiness_support import readiness_step, wait_until_ready
from tests.support import REPO_ROOT, free_port, log_text, pid_alive, port_held, required, wait_until

ENGINES = ("nim", "llamacpp", "vllm")
SLEEPER = '{python} -c "import time; time.sleep(120)"'

# A server that ignores SIGTERM, with one worker in its process group and one daemon that
# double-forked into its own session (outside the group and, once re-parented, the tree).
TREE_SCRIPT = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
IGNORE = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
IGNORE += "print('ignoring', os.getpid(), flush=True); time.sleep(600)"
DAEMON = "import os, sys\\nif os.fork(): os._exit(0)\\nos.setsid()\\n" + IGNORE.replace("; ", "\\n")
subprocess.Popen([sys.executable, "-c", IGNORE])
subprocess.Popen([sys.executable, "-c", DAEMON]).wait()
print("ignoring", os.getpid(), flush=True)
time.sleep(600)
"""


def sim_spec(model_id: str, engine: str, port: int, *sim_args: str, **fields: Any) -> ModelSpec:
    command = f"{{python}} -m simulator --engine {engine} --port {port} --model-id {model_id}"
    return command_spec(model_id, " ".join([command, *sim_args]), port=port, engine=engine, **fields)


def command_spec(
    model_id: str, command: str, *, port: int | None = None, engine: str = "nim", **fields: Any
) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        url=f"http://127.0.0.1:{port or free_port()}",
        engine=engine,
        runtime="process",
        load_command=command,
        workdir=REPO_ROOT,
        **fields,
    )


def stop_all(runtime: ProcessRuntime) -> None:
    for handle in runtime.find_managed():
        runtime.stop(handle, grace_s=0.5)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(settings)
    yield rt
    stop_all(rt)


# --- start, ready, stop --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_start_ready_stop_with_each_engine(runtime: ProcessRuntime, settings: Settings, engine: str) -> None:
    port = free_port()
    spec = sim_spec(f"sim-{engine}", engine, port, "--startup-s", "0.3")
    assert runtime.check(spec).available

    handle = runtime.start(spec)
    assert handle.runtime == "process"
    assert handle.model_id == spec.id
    proc = psutil.Process(int(handle.ref))
    assert os.getpgid(proc.pid) == proc.pid  # its own process group
    env = proc.environ()
    assert env[INSTANCE_ENV] == settings.instance
    assert env[MODEL_ENV] == spec.id
    assert env[LAUNCH_ENV]
    pidfile = json.loads((settings.run_dir / settings.instance / f"{spec.id}.pid").read_text())
    assert pidfile["pid"] == proc.pid
    assert pidfile["model_id"] == spec.id
    assert pidfile["create_time"] == pytest.approx(proc.create_time())

    took = wait_until_ready(runtime, handle, spec, timeout_s=20, poll_s=0.05)
    assert 0.2 <= took < 20
    assert probe_ready(spec).ok
    assert runtime.inspect(handle).running
    running = runtime.check(spec)
    assert (
        running.reason == f"{spec.id} is already running as pid {proc.pid}; stop it before starting it again"
    )
    with pytest.raises(AlreadyRunning):
        runtime.start(spec)

    observed = runtime.stop(handle, grace_s=5)
    assert observed.running is False
    assert observed.exit_code == 0
    assert not pid_alive(proc.pid)
    assert port_is_free(port)
    assert runtime.inspect(handle).exit_code == 0
    assert runtime.find_managed() == []
    log = log_text(settings.log_dir, spec.id)
    assert f"starting {spec.id}: " in log
    assert "-m simulator" in log
    for event in ("start", "listening", "ready", "stopped"):
        assert f"SIM_EVENT {event} " in log
    assert "exited with code 0" in log


def test_sigterm_proof_tree_is_gone_after_grace(
    runtime: ProcessRuntime, settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "tree.py"
    script.write_text(TREE_SCRIPT)
    spec = command_spec("tree", f"{{python}} {script}")
    handle = runtime.start(spec)

    def ignoring_pids() -> list[int] | None:
        pids = [
            int(pid) for pid in re.findall(r"^ignoring (\d+)$", log_text(settings.log_dir, spec.id), re.M)
        ]
        return pids if len(pids) == 3 else None

    pids = wait_until(ignoring_pids, timeout_s=15, what="the server and its two workers to ignore SIGTERM")
    leader = int(handle.ref)
    (daemon,) = [pid for pid in pids if pid != leader and os.getsid(pid) == pid]
    (worker,) = [pid for pid in pids if pid not in (leader, daemon)]
    assert os.getpgid(worker) == leader
    assert os.getpgid(daemon) != leader  # only the launch marker can find it
    assert daemon not in [p.pid for p in psutil.Process(leader).children(recursive=True)]

    grace = 1.5
    began = time.monotonic()
    observed = runtime.stop(handle, grace_s=grace)
    took = time.monotonic() - began

    # The grace is waited out in full (SIGKILL before it: took < grace, on any machine), and
    # not twice over or replaced by a default: after it come two process scans, the SIGKILL
    # and the reaping, which take a fraction of a second even on a loaded 2-core machine.
    assert grace <= took < 2 * grace
    assert observed.exit_code == 137  # SIGKILL, written as the shell and Docker do
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert "SIGKILL" in log_text(settings.log_dir, spec.id)


# --- failures during startup ---------------------------------------------------------------------


def test_premature_exit_is_seen_within_one_poll(runtime: ProcessRuntime) -> None:
    # The waiter thread reaps the child the moment it dies: its report is the exit time.
    exits: list[tuple[str, int | None, float]] = []
    runtime.on_exit = lambda model_id, code: exits.append((model_id, code, time.monotonic()))
    spec = sim_spec("sim-fails", "nim", free_port(), "--fail-start")
    handle = runtime.start(spec)
    poll = 0.5

    with pytest.raises(PrematureExit) as failure:
        wait_until_ready(runtime, handle, spec, timeout_s=60, poll_s=poll)
    noticed = time.monotonic()

    assert failure.value.exit_code == 3
    assert "failing at start as asked" in failure.value.log_tail
    assert "exited with code 3" in str(failure.value)
    wait_until(lambda: exits, timeout_s=5, what="the on_exit callback")
    assert exits[0][:2] == ("sim-fails", 3)
    # Within one poll interval, plus a poll's worth of slack for the look itself (a refused
    # connection: milliseconds, loaded or not). A wait that only probes would notice at the
    # 60 s timeout; one that checks for the exit only every other poll would need two polls.
    assert noticed - exits[0][2] < 2 * poll
    assert runtime.inspect(handle).exit_code == 3
    assert runtime.find_managed() == []  # the waiter removed the pidfile


def test_start_timeout_reports_the_last_probe(runtime: ProcessRuntime) -> None:
    spec = sim_spec("sim-slow", "nim", free_port(), "--startup-s", "30")
    handle = runtime.start(spec)
    limit = 2.0
    began = time.monotonic()
    with pytest.raises(StartTimeout) as timeout:
        wait_until_ready(runtime, handle, spec, timeout_s=limit, poll_s=0.1)
    took = time.monotonic() - began
    # Not before the timeout (on any machine), and not twice it: the overrun is one poll and
    # one probe of a server that answers 503 at once. Fails a deadline counted twice or
    # ignored (the load would take 30 s).
    assert limit <= took < 2 * limit
    assert timeout.value.timeout_s == limit
    assert "/v1/health/ready answered 503" in timeout.value.last_reason
    assert runtime.inspect(handle).running  # a timeout says nothing about stopping it
    assert runtime.stop(handle, grace_s=5).exit_code == 0


def test_readiness_step_does_not_block(runtime: ProcessRuntime, settings: Settings) -> None:
    spec = sim_spec("sim-step", "llamacpp", free_port(), "--startup-s", "3")
    handle = runtime.start(spec)
    wait_until(lambda: probe_ready(spec).answered, timeout_s=10, what="the server to answer")

    step = readiness_step(runtime, handle, spec)
    stepped_at = time.time()
    assert not step.ready
    assert "503" in step.reason
    assert "Loading model" in step.reason
    with pytest.raises(StartTimeout):
        readiness_step(runtime, handle, spec, timeout_s=60, now=handle.started_at + 61)
    assert wait_until(lambda: readiness_step(runtime, handle, spec).ready, timeout_s=10, what="ready")
    # One probe, not a wait for the load: the step was over before the simulator's own ready
    # moment (its log line), a second or more after it answered even on a loaded machine.
    ready_at = next(
        e.t
        for line in log_text(settings.log_dir, spec.id).splitlines()
        if (e := parse_event(line)) and e.name == "ready"
    )
    assert stepped_at < ready_at, f"the step returned {stepped_at - ready_at:.2f}s after the load ended"


def test_crash_after_start_calls_on_exit(runtime: ProcessRuntime) -> None:
    exits: list[tuple[str, int | None]] = []
    runtime.on_exit = lambda model_id, code: exits.append((model_id, code))
    spec = sim_spec("sim-crash", "vllm", free_port(), "--crash-after-s", "0.5")
    handle = runtime.start(spec)
    wait_until(lambda: exits, timeout_s=10, what="the crash to be reported")
    assert exits == [("sim-crash", 1)]
    observed = runtime.inspect(handle)
    assert observed.running is False
    assert observed.exit_code == 1
    assert not observed.missing


# --- check() and start() refusals ----------------------------------------------------------------


def test_port_in_use_names_the_holder(runtime: ProcessRuntime, settings: Settings) -> None:
    port = free_port()
    with port_held(port) as listener:
        spec = sim_spec("sim-port", "nim", port)

        availability = runtime.check(spec)
        assert not availability.available
        assert f"port {port} is already in use by process {listener.pid} (" in availability.reason

        with pytest.raises(PortInUse) as refused:
            runtime.start(spec)
        assert refused.value.port == port
        assert refused.value.holder is not None
        assert f"process {listener.pid} " in refused.value.holder
        assert runtime.find_managed() == []
        assert not log_path(settings.log_dir, spec.id).exists()  # nothing was started


def test_model_files_missing(runtime: ProcessRuntime, tmp_path: Path) -> None:
    weights = tmp_path / "models" / "tiny.gguf"
    spec = sim_spec("sim-files", "llamacpp", free_port(), model_path=weights)

    availability = runtime.check(spec)
    assert not availability.available
    assert availability.reason == f"model files not found at {weights}"
    with pytest.raises(ModelFilesMissing) as missing:
        runtime.start(spec)
    assert missing.value.path == str(weights)

    weights.parent.mkdir()
    weights.write_bytes(b"GGUF")
    assert runtime.check(spec).available


def test_executable_missing_is_named(runtime: ProcessRuntime) -> None:
    spec = command_spec("no-exe", "dxg-no-such-server --port 9")
    availability = runtime.check(spec)
    assert (
        availability.reason
        == "executable 'dxg-no-such-server' not found on PATH; install it or fix load_command"
    )
    with pytest.raises(ExecutableMissing):
        runtime.start(spec)

    relative = command_spec("no-exe-rel", "./bin/llama-server --port 9")
    assert f"./bin/llama-server (relative to {REPO_ROOT})" in runtime.check(relative).reason


def test_env_names_but_never_values(
    runtime: ProcessRuntime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DXG_TEST_PASSED_TOKEN", raising=False)
    needs = command_spec("needs-env", SLEEPER, env={"DXG_TEST_PASSED_TOKEN": None})
    availability = runtime.check(needs)
    assert not availability.available
    assert "DXG_TEST_PASSED_TOKEN" in availability.reason
    with pytest.raises(EnvMissing) as missing:
        runtime.start(needs)
    assert missing.value.names == ["DXG_TEST_PASSED_TOKEN"]

    passed, fixed = "passed-secret-1", "fixed-secret-3"
    monkeypatch.setenv("DXG_TEST_PASSED_TOKEN", passed)
    spec = command_spec(
        "with-env",
        SLEEPER + " --api-key argv-secret-2",
        env={"DXG_TEST_PASSED_TOKEN": None, "DXG_TEST_FIXED_TOKEN": fixed, "HF_HOME": "/tmp/hf"},
    )
    handle = runtime.start(spec)
    env = psutil.Process(int(handle.ref)).environ()
    assert env["DXG_TEST_PASSED_TOKEN"] == passed
    assert env["DXG_TEST_FIXED_TOKEN"] == fixed
    assert env["HF_HOME"] == "/tmp/hf"

    written = (
        log_text(settings.log_dir, spec.id)
        + (settings.run_dir / settings.instance / "with-env.pid").read_text()
    )
    assert "--api-key ***" in written
    assert "DXG_TEST_FIXED_TOKEN" in written
    for secret in (passed, "argv-secret-2", fixed):
        assert secret not in written
    assert runtime.stop(handle, grace_s=5).exit_code == 143  # SIGTERM


# --- finding our own processes again -----------------------------------------------------------


def other_instance(settings: Settings, tmp_path: Path) -> Settings:
    """A second app on the same machine, sharing the run and log folders."""
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'other.db'}",
        log_dir=settings.log_dir,
        run_dir=settings.run_dir,
        instance="other-app",
    )


def forge_pidfile(settings: Settings, record: dict[str, Any]) -> Path:
    """A pidfile in ``settings``' folder claiming ``record`` (filled up to a complete one)."""
    path = settings.run_dir / settings.instance / f"{record['model_id']}.pid"
    data = {"pgid": record["pid"], "instance": settings.instance, "launch": "forged", **record}
    path.write_text(json.dumps(data))
    return path


def test_find_managed_finds_only_this_instances_processes(
    runtime: ProcessRuntime, settings: Settings, tmp_path: Path
) -> None:
    other_settings = other_instance(settings, tmp_path)
    other = ProcessRuntime(other_settings)
    try:
        mine = runtime.start(command_spec("mine", SLEEPER))
        theirs = other.start(command_spec("theirs", SLEEPER))

        # Later app runs (fresh runtimes) see only their own instance's server.
        assert [h.model_id for h in ProcessRuntime(settings).find_managed()] == ["mine"]
        assert [h.model_id for h in ProcessRuntime(other_settings).find_managed()] == ["theirs"]
        found = ProcessRuntime(settings).find_managed()[0]
        assert (found.ref, found.started_at) == (mine.ref, pytest.approx(mine.started_at))

        # Pidfiles that point at processes not ours: their server relabelled as ours, this
        # test's own process, a pid that is gone, and garbage. All ignored and removed.
        my_start = psutil.Process().create_time()
        their_record = json.loads((other_settings.run_dir / "other-app" / "theirs.pid").read_text())
        forged = [
            forge_pidfile(settings, {**their_record, "instance": settings.instance}),
            forge_pidfile(settings, {"model_id": "me", "pid": os.getpid(), "create_time": my_start}),
            forge_pidfile(settings, {"model_id": "gone", "pid": exited_pid(), "create_time": time.time()}),
        ]
        garbage = settings.run_dir / settings.instance / "junk.pid"
        garbage.write_text("{not json")

        assert [h.model_id for h in ProcessRuntime(settings).find_managed()] == ["mine"]
        assert [path for path in [*forged, garbage] if path.exists()] == []
        assert pid_alive(int(theirs.ref))
        assert pid_alive(os.getpid())
    finally:
        stop_all(other)


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_adopted_process_is_inspected_and_stopped(runtime: ProcessRuntime, settings: Settings) -> None:
    started = runtime.start(command_spec("adoptee", SLEEPER))
    later = ProcessRuntime(settings)  # the next app run, which did not spawn it
    (adopted,) = later.find_managed()
    assert later.inspect(adopted).running

    observed = later.stop(adopted, grace_s=5)
    # Only the spawning app can reap it, so the adopter doesn't learn the exit code.
    assert observed.running is False
    assert observed.exit_code is None
    assert not pid_alive(int(adopted.ref))
    after = later.inspect(adopted)
    assert after.running is False
    assert after.missing
    wait_until(lambda: runtime.inspect(started).exit_code == 143, timeout_s=5, what="the spawner's exit code")


def test_inspect_of_a_reused_pid_is_not_running(runtime: ProcessRuntime) -> None:
    # A handle from an earlier app run whose pid now names an unrelated process (this test).
    foreign = Handle(
        runtime="process",
        model_id="old",
        ref=str(os.getpid()),
        started_at=psutil.Process().create_time(),
        extra={"launch": "old-launch"},
    )
    assert runtime.inspect(foreign).missing
    observed = runtime.stop(foreign, grace_s=0.1)  # must not signal this process
    assert observed.running is False
    assert pid_alive(os.getpid())


# --- logs ----------------------------------------------------------------------------------------


def test_logs_returns_the_tail_and_ids_cannot_escape(runtime: ProcessRuntime, settings: Settings) -> None:
    spec = sim_spec("sim-logs", "nim", free_port())
    handle = runtime.start(spec)
    wait_until_ready(runtime, handle, spec, timeout_s=20, poll_s=0.05)

    tail = runtime.logs(handle, spec.id, 2)
    assert len(tail.splitlines()) == 2
    everything = runtime.logs(handle, spec.id, 1000)
    assert everything.splitlines()[-2:] == tail.splitlines()
    assert "SIM_EVENT ready" in everything
    assert runtime.logs(None, "never-started", 10) == ""

    for bad in ("../x", "a/b", "/etc/passwd", ".hidden"):
        with pytest.raises(ValueError, match="not allowed"):
            runtime.logs(None, bad, 10)
        with pytest.raises(ValidationError):
            command_spec(bad, SLEEPER)


# --- the registry ------------------------------------------------------------------------------


def test_registry_shares_runtimes_and_wires_on_exit(settings: Settings) -> None:
    runtimes = Runtimes(settings)
    process: Runtime = runtimes.get("process")
    assert isinstance(process, ProcessRuntime)
    assert isinstance(process, Runtime)
    assert runtimes.for_spec(command_spec("x", SLEEPER)) is process

    exits: list[tuple[str, int | None]] = []

    def on_exit(model_id: str, code: int | None) -> None:
        exits.append((model_id, code))

    runtimes.set_on_exit(on_exit)
    handle = process.start(sim_spec("sim-reg", "nim", free_port(), "--fail-start"))
    wait_until(lambda: exits, timeout_s=10, what="the exit report")
    assert exits == [("sim-reg", 3)]
    assert runtimes.for_handle(handle) is process

    # Docker support may be missing on this machine; its models then read Offline, with why.
    docker = runtimes.get("docker")
    if isinstance(docker, UnavailableRuntime):
        assert not required("DXG_REQUIRE_DOCKER"), f"the docker runtime is unavailable: {docker.reason}"
        assert "docker" in docker.reason
        assert not docker.check(command_spec("y", SLEEPER)).available
        assert docker.find_managed() == []
    else:
        # A real Docker runtime: shared like the process one, and wired to the same exit
        # callback, which was set before it was created (its containers' exits wake the app).
        assert docker.kind == "docker"
        assert runtimes.get("docker") is docker
        assert docker in runtimes.created()
        assert getattr(docker, "on_exit", None) is on_exit
