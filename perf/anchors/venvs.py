"""The anchors' own virtual environments, installed on first use under ``.cache/perf-venvs/``.

AIPerf and llama-benchy pull in heavy, fast-moving dependencies (transformers, numpy, zmq...)
that must never reach the project's own requirements, so each gets a venv of its own. The
installed pin is recorded in a marker file; a venv whose marker matches is reused as is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from perf.common import log

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CACHE_DIR: Final = REPO_ROOT / ".cache"
VENVS_DIR: Final = CACHE_DIR / "perf-venvs"
MARKER: Final = "installed.json"  # written last: a venv without it is a broken install


@dataclass(frozen=True)
class Anchor:
    name: str  # the venv's folder name
    requirement: str  # the exact pin, verified to install and run against the simulator
    command: str  # the console script the package installs


AIPERF: Final = Anchor("aiperf", "aiperf==0.13.0", "aiperf")
LLAMA_BENCHY: Final = Anchor("llama-benchy", "llama-benchy==0.4.0", "llama-benchy")
ANCHORS: Final = {a.name: a for a in (AIPERF, LLAMA_BENCHY)}


def venv_dir(anchor: Anchor) -> Path:
    return VENVS_DIR / anchor.name


def executable(anchor: Anchor, name: str | None = None) -> Path:
    """A program in the anchor's venv: its console script by default, or ``name`` (``python``)."""
    return venv_dir(anchor) / "bin" / (name or anchor.command)


def installed(anchor: Anchor) -> dict[str, object] | None:
    """The marker of a complete install of exactly this pin, or None."""
    marker = venv_dir(anchor) / MARKER
    if not marker.exists() or not executable(anchor).exists():
        return None
    found: dict[str, object] = json.loads(marker.read_text())
    return found if found.get("requirement") == anchor.requirement else None


def size_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 1)


def ensure_venv(anchor: Anchor, python: str = "python3") -> dict[str, object]:
    """Install ``anchor`` into its venv unless already there; return the install record.

    The record says how long the install took and how large the venv is. A failed pip run
    raises with pip's own words: a registry or resolver failure must be readable as it is.
    """
    found = installed(anchor)
    if found is not None:
        return {**found, "reused": True}
    target = venv_dir(anchor)
    if target.exists():  # a half-made venv (no marker, or another pin): start clean
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"installing {anchor.requirement} into {target} (once; minutes)")
    start = time.monotonic()
    subprocess.run([python, "-m", "venv", str(target)], check=True)
    pip = [str(executable(anchor, "python")), "-m", "pip", "install", "--no-input"]
    done = subprocess.run([*pip, anchor.requirement], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"pip install {anchor.requirement} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    record: dict[str, object] = {
        "requirement": anchor.requirement,
        "install_s": round(time.monotonic() - start, 1),
        "size_mb": size_mb(target),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (target / MARKER).write_text(json.dumps(record, indent=2))
    return {**record, "reused": False}
