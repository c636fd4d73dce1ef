"""The per-runtime settings blocks of a catalog entry (``compose:``, ``docker:``) and the
pieces of validation they share with the entry itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SIZE_RE = re.compile(r"^[0-9]+[bkmg]?b?$", re.IGNORECASE)

STRICT = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Port = Annotated[int, Field(ge=1, le=65535)]


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the catalog's folder, not to wherever the app was started."""
    path = path.expanduser()
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return path


class ComposeSettings(BaseModel):
    """runtime: compose -- a service in a compose file."""

    model_config = STRICT

    file: Path
    service: Text
    project: str | None = None

    @field_validator("file")
    @classmethod
    def _file_from_catalog_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str | None) -> str | None:
        if value is not None and not _PROJECT_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a compose project name: use a-z, 0-9, '_' and '-', "
                "starting with a letter or digit"
            )
        return value


class VolumeMount(BaseModel):
    """One ``host:container[:ro]`` mount; ``source`` is a host path or a named volume."""

    model_config = STRICT

    source: Text
    target: Text
    read_only: bool = False

    @field_validator("target")
    @classmethod
    def _absolute_target(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"container path {value!r} must be absolute, e.g. /opt/nim/.cache")
        return value


class ContainerFields(BaseModel):
    """What every runtime that runs an image takes: the image, published ports, mounts and the
    arguments (``command`` replaces the image's CMD; a list, so no shell splits it)."""

    model_config = STRICT

    image: Text
    ports: dict[Port, Port] = Field(default_factory=dict)  # container port -> published port
    volumes: tuple[VolumeMount, ...] = ()
    command: tuple[str, ...] | None = None

    @field_validator("ports", mode="before")
    @classmethod
    def _ports_from_list(cls, value: Any) -> Any:
        return ports_from_list(value)

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes_from_strings(cls, value: Any, info: ValidationInfo) -> Any:
        return volumes_from_strings(value, info)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        return argv_words(value)


class DockerSettings(ContainerFields):
    """runtime: docker -- one container run from an image.

    ``entrypoint`` replaces the image's ENTRYPOINT, a list like ``command``. ``mem_limit`` caps
    the container's memory (swap included), so a runaway server is OOM-killed instead of
    thrashing the host.
    """

    gpus: Literal["all"] | tuple[str, ...] | None = None  # None: no GPU
    shm_size: str | None = None
    entrypoint: tuple[str, ...] | None = None
    mem_limit: str | None = None

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if value is None or value == "all":
            return value
        if isinstance(value, list) and value and all(is_scalar(item) for item in value):
            return tuple(str(item) for item in value)
        raise ValueError(
            f"{value!r} is not allowed; use 'all', a list of device ids like [0, 1], "
            "or leave it out for no GPU"
        )

    @field_validator("shm_size", "mem_limit")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a size; write it like '16gb' or '512m'")
        return value

    @field_validator("entrypoint", mode="before")
    @classmethod
    def _entrypoint(cls, value: Any) -> Any:
        return argv_words(value)


def ports_from_list(value: Any) -> Any:
    """``["8001:8000"]`` (host:container, as docker run writes it) as ``{8000: 8001}``."""
    if not isinstance(value, list):
        return value
    ports: dict[int, int] = {}
    for item in value:
        parts = item.split(":") if isinstance(item, str) else []
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            # Unquoted, YAML 1.1 reads 8000:8000 as a base-60 number: say so.
            raise ValueError(
                f'{item!r} is not allowed; write each port as a quoted "host:container" '
                'string like "8000:8000", or use a mapping {container: host}'
            )
        ports[int(parts[1])] = int(parts[0])
    return ports


def volumes_from_strings(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, list):
        return value
    return [_parse_volume(item, info) if isinstance(item, str) else item for item in value]


def argv_words(value: Any) -> Any:
    if value is None:
        return value
    # A string would need shell-like splitting, which is where quoting surprises come from.
    if not isinstance(value, list) or not value or not all(is_scalar(item) for item in value):
        raise ValueError(
            f"{value!r} is not allowed; write a non-empty list of words, "
            'e.g. ["--port", "8000"], or leave it out to keep the image\'s own'
        )
    return tuple(str(item) for item in value)


def is_scalar(value: Any) -> bool:
    # YAML's true/false would turn into "True"/"False", which nobody means.
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _parse_volume(text: str, info: ValidationInfo) -> dict[str, Any]:
    parts = text.split(":")
    mode = parts.pop() if len(parts) == 3 else "rw"
    if len(parts) != 2 or mode not in ("ro", "rw"):
        raise ValueError(f"{text!r} is not allowed; write 'host:container' or 'host:container:ro'")
    source, target = parts
    # Docker wants absolute host paths; a bare name (no '/', '.', '~') is a named volume.
    if source.startswith(("/", ".", "~")):
        source = str(resolve_path(Path(source), info))
    return {"source": source, "target": target, "read_only": mode == "ro"}
