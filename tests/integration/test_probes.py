"""Readiness and liveness probes against the simulator over real HTTP, and the external runtime.

The simulator logs the moment it became ready (``SIM_EVENT ready``); a probe must never
say ready before that moment, and must say why not in words while the model loads.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from lifecycle.catalog import ModelSpec
from lifecycle.observe.probes import ProbeResult, probe_live, probe_ready
from lifecycle.runtimes.external import ExternalRuntime
from lifecycle.runtimes.protocol import RuntimeFailure
from settings import Settings
from simulator.process import SimulatorProcess
from tests.support import free_port, simulator, wait_until

MODEL = "probe-sim"
# Long enough for a probe to land inside the load on a busy machine; during_load checks it did.
STARTUP_S = "2.0"
T = TypeVar("T")


def target(port: int, engine: str, **fields: Any) -> ModelSpec:
    return ModelSpec(id=MODEL, url=f"http://127.0.0.1:{port}", engine=engine, runtime="external", **fields)


def during_load(sim: SimulatorProcess, look: Callable[[], T]) -> T:
    """``look()``, checked against the simulator's own clock to have run before it was ready."""
    result = look()
    finished = time.time()
    ready_at = sim.wait_event("ready", timeout_s=15).t
    assert finished < ready_at, f"probed {finished - ready_at:.2f}s after the load ended: raise STARTUP_S"
    return result


def first_ready(spec: ModelSpec) -> tuple[ProbeResult, float]:
    result = wait_until(lambda: (r := probe_ready(spec)).ok and r, timeout_s=15, what="ready probe")
    return result, time.time()


# What each engine says while its model loads: (answered, words in the reason, alive).
LOADING = {
    "nim": (True, "/v1/health/ready answered 503", True),
    "llamacpp": (True, "/health answered 503: ", True),
    "vllm": (False, "(connection refused)", False),
}


@pytest.mark.parametrize("engine", sorted(LOADING))
def test_not_ready_while_loading_then_ready(engine: str) -> None:
    answered, words, alive = LOADING[engine]
    with simulator(engine, MODEL, "--startup-s", STARTUP_S) as sim:
        spec = target(sim.port, engine)
        # vLLM binds but doesn't listen while loading; the others listen from the start.
        sim.wait_event("start" if engine == "vllm" else "listening")

        loading, live = during_load(sim, lambda: (probe_ready(spec), probe_live(spec)))
        assert not loading.ok
        assert loading.answered is answered
        assert words in loading.reason
        if engine == "llamacpp":
            assert "Loading model" in loading.reason
        assert live.ok is alive

        ready, seen_at = first_ready(spec)
        assert ready.reason == "ready"
        assert ready.status_code == 200
        assert sim.wait_event("ready").t <= seen_at
        assert probe_live(spec).ok


def test_vllm_answering_but_model_not_listed_yet() -> None:
    with simulator("vllm", MODEL, "--startup-s", STARTUP_S, "--serve-while-loading") as sim:
        spec = target(sim.port, "vllm")
        sim.wait_event("listening")
        loading, live = during_load(sim, lambda: (probe_ready(spec), probe_live(spec)))
        assert not loading.ok
        assert loading.answered
        assert loading.reason == f"/v1/models does not list {MODEL!r} yet"
        assert live.ok  # /health is 200 before the model is there

        first_ready(spec)
        # Ready means *this* model is listed, not just any.
        other = probe_ready(target(sim.port, "vllm", served_model="another-model"))
        assert not other.ok
        assert "'another-model'" in other.reason


def test_connection_refused_reason() -> None:
    port = free_port()
    for engine, path in (("nim", "/v1/health/ready"), ("llamacpp", "/health"), ("openai", "/v1/models")):
        result = probe_ready(target(port, engine))
        assert not result.ok
        assert not result.answered
        assert result.reason == f"nothing answers at http://127.0.0.1:{port}{path} (connection refused)"
        assert result.status_code is None
    assert not probe_live(target(port, "nim")).ok


def test_silent_server_times_out_with_reason() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog, but nobody ever answers
        spec = target(silent.getsockname()[1], "nim")
        result = probe_ready(spec, timeout_s=0.3)
    assert not result.ok
    assert "did not answer within 0.3s" in result.reason
    assert result.elapsed_s < 2


def test_health_path_override() -> None:
    with simulator("nim", MODEL, "--startup-s", STARTUP_S) as sim:
        sim.wait_event("listening")
        # The live route answers 200 while loading: the override is what gets probed.
        live_path = target(sim.port, "nim", health_path="/v1/health/live")
        overridden, default = during_load(
            sim, lambda: (probe_ready(live_path), probe_ready(target(sim.port, "nim")))
        )
        assert overridden.ok
        assert not default.ok

        first_ready(target(sim.port, "nim"))
        wrong = probe_ready(target(sim.port, "nim", health_path="/no/such/route"))
        assert not wrong.ok
        assert wrong.reason.startswith("/no/such/route answered 404")
        # An OpenAI-compatible server is ready once /v1/models answers.
        assert probe_ready(target(sim.port, "openai")).ok


# --- the external runtime: status from the probe only --------------------------------------------


def test_external_runtime_follows_the_probe(settings: Settings) -> None:
    runtime = ExternalRuntime(settings)
    port = free_port()
    spec = target(port, "llamacpp", manual_start="run `llama-server -m tiny.gguf --port 8100` yourself")
    handle = runtime.handle_for(spec)

    down = runtime.check(spec)
    assert not down.available
    assert down.reason.startswith(
        f"external server not answering at http://127.0.0.1:{port}: nothing answers"
    )
    assert not runtime.inspect(handle).running

    with pytest.raises(RuntimeFailure, match=re.escape("llama-server -m tiny.gguf")):
        runtime.start(spec)
    with pytest.raises(RuntimeFailure, match="does not stop it"):
        runtime.stop(handle, grace_s=1)
    assert runtime.find_managed() == []
    assert runtime.logs(handle, spec.id, 10) == ""

    with SimulatorProcess("llamacpp", MODEL, port, ("--startup-s", STARTUP_S)) as sim:
        sim.wait_event("listening")
        # Loading llama.cpp answers 503 on /health: reachable, so Available, and running. Checked
        # against the simulator's clock to have happened while loading, or the 503 went untested.
        available, running = during_load(sim, lambda: (runtime.check(spec), runtime.inspect(handle)))
        assert available.available
        assert running.running
    assert not runtime.inspect(handle).running
