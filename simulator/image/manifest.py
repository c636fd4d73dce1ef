"""Which host files go into the image, and where each one lands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
SITE = PurePosixPath("/opt/dxg-sim/site")  # PYTHONPATH inside the image
SIM_PACKAGE = Path(__file__).resolve().parent.parent

# Standard library parts a headless HTTP server never imports. config-3.11-*
# alone is a 25 MB static libpython; without these the image stays ~45 MB.
_STDLIB_SKIP_TOP = frozenset(
    {
        "config-3.11-x86_64-linux-gnu",
        "distutils",
        "ensurepip",
        "idlelib",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "tkinter",
        "turtledemo",
        "unittest",
        "venv",
        "turtle.py",
        "EXTERNALLY-MANAGED",
        # A symlink into /etc that only hooks Ubuntu's crash reporter.
        "sitecustomize.py",
    }
)
_SKIP_ANYWHERE = {"test", "tests", "idle_test"}
# Test and terminal/database extensions, and the libraries only they pull in.
_DYNLOAD_SKIP = re.compile(
    r"^(_test|_xxtestfuzz|_ctypes_test|xxlimited|_curses|readline|_dbm|nis|ossaudiodev)"
)
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")

# Runs under the venv's interpreter: import what the simulator imports at run
# time (uvicorn loads its protocol classes in Config.load) and report which
# third-party modules came from site-packages.
_PROBE = """
import json, site, sys
before = set(sys.modules)
from simulator.app import build_app
from simulator.clock import StartClock
from simulator.config import SimConfig
from simulator.server import uvicorn_config
from simulator.state import SimState
for engine in ("nim", "llamacpp", "vllm"):
    state = SimState(SimConfig(engine=engine, port=0, model_id="probe"), StartClock.now())
    uvicorn_config(build_app(state)).load()
dirs = site.getsitepackages() + [site.getusersitepackages()]
files = [getattr(sys.modules[m], "__file__", None) for m in set(sys.modules) - before]
print(json.dumps({"site_dirs": dirs, "files": [f for f in files if f]}))
"""


@dataclass(frozen=True)
class Entry:
    source: Path
    dest: PurePosixPath  # absolute path inside the image


def _tree(root: Path, dest: PurePosixPath, skip_top: frozenset[str] = frozenset()) -> Iterator[Entry]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip_top or _SKIP_ANYWHERE.intersection(rel.parts):
            continue
        if path.is_file():
            yield Entry(path, dest / rel.as_posix())


def stdlib_entries() -> list[Entry]:
    entries = list(_tree(STDLIB, PurePosixPath(STDLIB.as_posix()), _STDLIB_SKIP_TOP))
    return [
        e
        for e in entries
        if not (e.source.parent.name == "lib-dynload" and _DYNLOAD_SKIP.match(e.source.name))
    ]


def shared_libraries(binaries: list[Path]) -> list[Entry]:
    """The libraries ``ldd`` resolves for these binaries, at the paths the loader looks for them."""
    found: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
        found.update(m.group(1) for m in _LDD_PATH.finditer(out))
    # Copied with their symlinks resolved: the image has no /lib -> usr/lib merge.
    return [Entry(Path(p).resolve(), PurePosixPath(p)) for p in sorted(found)]


def site_package_roots(python: str = sys.executable) -> list[Path]:
    """Top-level packages and modules the simulator pulls from site-packages, found by importing it."""
    out = subprocess.run(
        [python, "-c", _PROBE], capture_output=True, text=True, check=True, cwd=SIM_PACKAGE.parent
    ).stdout
    probe = json.loads(out)
    site_dirs = [Path(d) for d in probe["site_dirs"]]
    roots: set[Path] = set()
    for file in map(Path, probe["files"]):
        for site_dir in site_dirs:
            if file.is_relative_to(site_dir):
                roots.add(site_dir / file.relative_to(site_dir).parts[0])
    native = [str(f) for root in roots if root.is_dir() for f in root.rglob("*.so")]
    if native or any(root.suffix == ".so" for root in roots):
        raise RuntimeError(
            f"the simulator now imports compiled extensions, which the image cannot hold: {native}"
        )
    return sorted(roots)


def site_entries() -> list[Entry]:
    entries: list[Entry] = []
    for root in site_package_roots():
        if root.is_dir():
            entries += [e for e in _tree(root, SITE / root.name) if "__pycache__" not in e.dest.parts]
        else:
            entries.append(Entry(root, SITE / root.name))
    return entries


def simulator_entries() -> list[Entry]:
    entries = _tree(SIM_PACKAGE, SITE / "simulator", frozenset({"image"}))
    return [e for e in entries if e.source.suffix == ".py"]


def manifest() -> list[Entry]:
    """Every file of the image's root filesystem, sorted by destination."""
    if not (PYTHON.is_file() and (STDLIB / "os.py").is_file()):
        raise RuntimeError(
            f"the image is built from Debian's {PYTHON} and {STDLIB}: apt-get install python3.11"
        )
    stdlib = stdlib_entries()
    dynload = [e.source for e in stdlib if e.source.suffix == ".so"]
    entries = [
        Entry(PYTHON, PurePosixPath(PYTHON.as_posix())),
        *stdlib,
        *shared_libraries([PYTHON, *dynload]),
        *site_entries(),
        *simulator_entries(),
    ]
    return sorted(entries, key=lambda e: e.dest)
