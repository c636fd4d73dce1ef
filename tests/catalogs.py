"""Catalog files for tests that run the whole app: one entry per kind of model a user meets.

Entries are plain dicts written as YAML, so a test reads exactly the file the
app reads. Simulated servers run from the repo root with the app's own Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from tests.support import REPO_ROOT, free_port

SIM_IMAGE = "dxg-sim:local"
SIM_COMPOSE = REPO_ROOT / "compose" / "sim.yaml"


def _entry(model_id: str, port: int, engine: str, runtime: str, **fields: Any) -> dict[str, Any]:
    return {"id": model_id, "url": f"http://127.0.0.1:{port}", "engine": engine, "runtime": runtime, **fields}


def sim_process(model_id: str, port: int, *sim_args: str, startup_s: float = 0.3) -> dict[str, Any]:
    """A simulated llama.cpp server run as a local process."""
    command = (
        f"{{python}} -m simulator --engine llamacpp --port {port} --model-id {model_id} "
        f"--startup-s {startup_s} --ttft-ms 5 --tokens-per-s 500"
    )
    return _entry(
        model_id,
        port,
        "llamacpp",
        "process",
        simulated=True,
        load_command=" ".join([command, *sim_args]),
        workdir=str(REPO_ROOT),
        startup_timeout_s=30,
    )


def external(model_id: str, port: int) -> dict[str, Any]:
    return _entry(
        model_id,
        port,
        "openai",
        "external",
        manual_start="Run ./start-it.sh on the GPU box; it turns green once port answers.",
    )


def offline(model_id: str, port: int, missing: Path) -> dict[str, Any]:
    """A process model whose weights file does not exist: Offline with that reason."""
    return {**sim_process(model_id, port), "model_path": str(missing)}


def sim_docker(model_id: str, port: int) -> dict[str, Any]:
    """The simulator image as a plain container, serving a NIM."""
    command = ["--engine", "nim", "--port", "8000", "--host", "0.0.0.0", "--model-id", model_id]
    docker = {"image": SIM_IMAGE, "ports": {8000: port}, "command": [*command, "--startup-s", "0.5"]}
    return _entry(model_id, port, "nim", "docker", simulated=True, docker=docker, startup_timeout_s=60)


def sim_compose(model_id: str, port: int) -> dict[str, Any]:
    """compose/sim.yaml's NIM service, moved to ``port`` through the file's own variable."""
    return _entry(
        model_id,
        port,
        "nim",
        "compose",
        simulated=True,
        served_model="sim-nim",
        compose={"file": str(SIM_COMPOSE), "service": "sim-nim"},
        env={"DXG_SIM_NIM_PORT": str(port)},
        startup_timeout_s=60,
    )


def write_catalog(path: Path, *models: dict[str, Any]) -> Path:
    """Write ``models`` as the catalog at ``path`` (block-style YAML, fields in the given order).

    Written whole to a sibling temp file and renamed over ``path``, so a running service's
    catalog poller never reads half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(yaml.safe_dump({"models": list(models)}, sort_keys=False), encoding="utf-8")
    temp.replace(path)
    return path


# A server that prints the secrets it was handed the ways real ones do, then dies before ready.
LEAKING_SERVER: Final = """
import os, sys
key, hf = os.environ["NGC_API_KEY"], os.environ.get("HF_TOKEN", "")
print("using key", key)
print("{ngc: " + key + "}")
print("auth header is", key[:8] + key[8:], "and hf", hf, flush=True)
sys.exit(3)
"""


def leaking_process(model_id: str, folder: Path, env: dict[str, str | None]) -> dict[str, Any]:
    """A process model running ``LEAKING_SERVER`` (written into ``folder``) with the catalog ``env``."""
    script = folder / "leak.py"
    script.write_text(LEAKING_SERVER)
    return {
        **sim_process(model_id, free_port()),
        "simulated": False,
        "load_command": f"{{python}} {script}",
        "env": env,
    }
