"""Stage the root filesystem and build ``dxg-sim:local``, skipping the build when nothing changed.

The image carries a label with a digest of every input (file contents and
destinations plus the Dockerfile), so a second build with the same inputs
returns at once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from simulator.image.manifest import PYTHON, SITE, Entry, manifest

TAG = "dxg-sim:local"
INPUTS_LABEL = "dxg.sim.inputs"
DOCKERFILE = Path(__file__).with_name("Dockerfile")


@dataclass(frozen=True)
class BuildOutcome:
    tag: str
    inputs: str
    built: bool  # False when the existing image already matched the inputs
    size_bytes: int
    seconds: float


def inputs_digest(entries: list[Entry]) -> str:
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    for entry in entries:
        digest.update(f"{entry.dest}\0{entry.source.stat().st_mode & 0o777:o}\0".encode())
        with entry.source.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _stage(entries: list[Entry], context: Path) -> None:
    rootfs = context / "rootfs"
    for entry in entries:
        target = rootfs / entry.dest.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        # copy2 keeps mtimes: Debian's stdlib .pyc files are valid only for the
        # source mtime they record, and stale ones would be recompiled at every start.
        shutil.copy2(entry.source, target)
    (rootfs / "tmp").mkdir(mode=0o1777)
    (rootfs / "tmp").chmod(0o1777)
    # Compile the copied packages with the image's own interpreter so the
    # container does not recompile them (the image sets PYTHONDONTWRITEBYTECODE).
    site = rootfs / SITE.relative_to("/")
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(site)], check=True)
    shutil.copy(DOCKERFILE, context / "Dockerfile")


def build_image(tag: str = TAG, force: bool = False) -> BuildOutcome:
    import docker  # host-only dependency; the simulator itself never imports it

    started = time.monotonic()
    entries = manifest()
    inputs = inputs_digest(entries)
    client = docker.from_env(timeout=300)
    try:
        if not force:
            try:
                image = client.images.get(tag)
            except docker.errors.ImageNotFound:
                image = None
            if image is not None and (image.labels or {}).get(INPUTS_LABEL) == inputs:
                return BuildOutcome(tag, inputs, False, int(image.attrs["Size"]), time.monotonic() - started)
        with tempfile.TemporaryDirectory(prefix="dxg-sim-image-") as tmp:
            _stage(entries, Path(tmp))
            image, _ = client.images.build(
                path=tmp, tag=tag, labels={INPUTS_LABEL: inputs}, rm=True, forcerm=True, pull=False
            )
        return BuildOutcome(tag, inputs, True, int(image.attrs["Size"]), time.monotonic() - started)
    finally:
        client.close()
