"""Running the compose tool: which one exists, calling it with an argv list, reading its config.

``docker compose`` (the v2 plugin) is preferred; Debian's ``docker-compose`` 1.29 is the
fallback. Both take the same ``-p``/``-f`` options and subcommands used here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lifecycle.core.events import redact_text
from lifecycle.runtimes.protocol import RuntimeFailure

VERSION_TIMEOUT_S = 15.0
CONFIG_TIMEOUT_S = 60.0
# Creating and starting containers; images are never pulled (the preflight checks them).
UP_TIMEOUT_S = 300.0
# What an error message keeps of the tool's output.
MAX_DETAIL_LINES = 12
MAX_DETAIL_CHARS = 1200

NOT_INSTALLED = (
    "neither `docker compose` (the Compose plugin) nor `docker-compose` is installed; "
    "install one of them, e.g. `apt-get install docker-compose`"
)


def detect_tool() -> tuple[str, ...] | None:
    """The compose command as an argv prefix, or None when there is none."""
    docker = shutil.which("docker")
    if docker is not None:
        try:
            probe = subprocess.run(
                [docker, "compose", "version"], capture_output=True, timeout=VERSION_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return (docker, "compose")
    legacy = shutil.which("docker-compose")
    return (legacy,) if legacy is not None else None


def trim(output: str) -> str:
    """The end of a tool's output (where the error is), redacted and short enough to show."""
    lines = [line for line in redact_text(output).strip().splitlines() if line.strip()]
    text = "\n".join(lines[-MAX_DETAIL_LINES:])
    return text if len(text) <= MAX_DETAIL_CHARS else "..." + text[-MAX_DETAIL_CHARS:]


@dataclass(frozen=True)
class ComposeCall:
    """One project's compose command line: tool, project name, files and environment."""

    tool: tuple[str, ...]
    project: str
    files: tuple[Path, ...]
    env: Mapping[str, str]

    def argv(self, *args: str) -> list[str]:
        files = [item for file in self.files for item in ("-f", str(file))]
        return [*self.tool, "-p", self.project, *files, *args]

    def shown(self, *args: str) -> str:
        """The command as the log shows it (the tool's name, not its path)."""
        return " ".join([Path(self.tool[0]).name, *self.tool[1:], *self.argv(*args)[len(self.tool) :]])

    def run(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        # Relative paths and the .env file are looked up next to the first compose file.
        try:
            return subprocess.run(
                self.argv(*args),
                env=dict(self.env),
                cwd=self.files[0].parent,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure(f"`{self.shown(*args)}` did not finish within {timeout_s:g}s") from exc
        except OSError as exc:
            raise RuntimeFailure(f"cannot run `{self.shown(*args)}`: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class ServiceConfig:
    """What the checks need of one service in the resolved config (no environment: it holds secrets)."""

    image: str | None
    ports: tuple[tuple[str, int], ...]  # (host ip, published host port), TCP only


def _published(entry: Any) -> tuple[str, int] | None:
    """A host binding from a ports entry: "ip:host:container[/proto]" (v1) or a mapping (v2)."""
    if isinstance(entry, Mapping):
        if str(entry.get("protocol") or "tcp") != "tcp":
            return None
        published = str(entry.get("published") or "")
        host = str(entry.get("host_ip") or "")
    else:
        spec, _, protocol = str(entry).partition("/")
        if protocol not in ("", "tcp"):
            return None
        parts = spec.rsplit(":", 2)
        if len(parts) < 2:
            return None  # only a container port: Docker picks a random host port
        host, published = (parts[0], parts[1]) if len(parts) == 3 else ("", parts[0])
    # A range like 8000-8005 is rare for a model server; it is not checked.
    return (host, int(published)) if published.isdigit() else None


def parse_services(text: str) -> dict[str, ServiceConfig]:
    """The services of ``config``'s output."""
    data = yaml.safe_load(text) or {}
    services = data.get("services") if isinstance(data, Mapping) else None
    found: dict[str, ServiceConfig] = {}
    for name, body in (services or {}).items():
        body = body if isinstance(body, Mapping) else {}
        ports = (_published(entry) for entry in body.get("ports") or [])
        image = body.get("image")
        found[str(name)] = ServiceConfig(str(image) if image else None, tuple(p for p in ports if p))
    return found


def read_config(call: ComposeCall) -> dict[str, ServiceConfig] | str:
    """The resolved services, or the tool's own words on why it rejects the file."""
    result = call.run("config", timeout_s=CONFIG_TIMEOUT_S)
    if result.returncode != 0:
        return trim(result.stderr or result.stdout) or f"exit code {result.returncode}"
    try:
        return parse_services(result.stdout)
    except yaml.YAMLError as exc:
        return f"`config` printed something that is not YAML: {exc}"


def write_override(path: Path, service: str, labels: Mapping[str, str]) -> Path:
    """A second compose file adding our labels and restart "no" to ``service``.

    Compose has no flag for labels at ``up`` time (v1 none at all), but it merges files: so the
    container carries the same labels as a docker-runtime one, and a stray restart policy in
    the user's file cannot start a second supervisor. No ``version:`` key, which compose
    merges with files of any version.
    """
    body: dict[str, Any] = {"services": {service: {"labels": dict(labels), "restart": "no"}}}
    text = "# Written by DxGChatBenchMark at each start; edits are overwritten.\n"
    text += yaml.safe_dump(body, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def environment_key(env: Mapping[str, str]) -> int:
    """An in-memory fingerprint of an environment, for caching; never stored or shown."""
    return hash(frozenset(env.items()))


def file_key(files: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Changes when a compose file or the .env next to the first one changes."""
    watched = [*files, files[0].parent / ".env"]
    stamps: list[tuple[str, int, int]] = []
    for path in watched:
        try:
            stat = path.stat()
            stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append((str(path), -1, -1))
    return tuple(stamps)
