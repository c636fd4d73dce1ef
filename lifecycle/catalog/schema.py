"""The model catalog: which model servers exist, where they answer and how each one is started.

The catalog is a hand-edited YAML file (``models.yaml`` by default)::

    models:
      - id: gpt-oss-20b                 # names logs/{id}.log and containers, so kept strict
        name: GPT-OSS-20B
        url: http://127.0.0.1:8000      # server root; its port is the model's host port
        engine: nim                     # nim | llamacpp | vllm | openai
        runtime: compose                # compose | docker | process | external
        compose: {file: compose/nim.yaml, service: gpt-oss-20b}
        env: {NGC_API_KEY: null}        # null: taken from the app's environment at start

Each runtime has its own settings and rejects the others':

- ``compose``: ``compose: {file, service, project}``; ``file`` is relative to the catalog's folder.
- ``docker``: ``docker: {image, ports, volumes, gpus, shm_size, command, entrypoint, mem_limit}``.
  ``command`` (replaces the image's CMD) and ``entrypoint`` are lists of words, never a string,
  so no shell splits them; ``mem_limit`` (like ``16g``) caps memory with no swap on top, so a
  runaway server is OOM-killed (and reported as such) instead of paging the host to a halt.
- ``process``: ``load_command``, split like a shell would (no shell runs it). A first word of
  ``{python}`` means the app's own interpreter, so simulators run without knowing the venv path.
  ``workdir`` (default: the catalog's folder) is where it runs.
- ``external``: started by hand; ``manual_start`` tells the user how.

``env`` applies to every runtime: the process's environment, the container's environment, or
the environment of ``docker compose`` (where ``- NAME`` pass-throughs read it).

Run ``python -m lifecycle.catalog [path]`` to check a catalog after editing it (``__main__``).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from lifecycle.catalog.checks import catalog_warnings, reference_problems
from lifecycle.catalog.errors import CatalogError, Problem, SpecProblems, describe_validation_error, kind_of
from lifecycle.catalog.kubernetes_section import KubernetesSettings
from lifecycle.catalog.sections import (
    STRICT,
    ComposeSettings,
    DockerSettings,
    Text,
    is_scalar,
    resolve_path,
)
from lifecycle.catalog.swarm_section import SwarmSettings, check_endpoint
from lifecycle.catalog.yaml_reader import LocatedDict, line_of, read_yaml

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # matched with fullmatch: "$" alone allows a final "\n"
PYTHON_PLACEHOLDER = "{python}"

_ID_RE = re.compile(ID_PATTERN)
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Engine(StrEnum):
    """The server software, which decides how readiness is probed."""

    NIM = "nim"
    LLAMACPP = "llamacpp"
    VLLM = "vllm"
    OPENAI = "openai"


class RuntimeKind(StrEnum):
    """How the app starts and stops the server."""

    COMPOSE = "compose"
    DOCKER = "docker"
    PROCESS = "process"
    EXTERNAL = "external"
    SWARM = "swarm"
    KUBERNETES = "kubernetes"


# A NIM's first load on a DGX Spark downloads and builds engines, which takes well over 5 min.
DEFAULT_STARTUP_TIMEOUT_S: Mapping[Engine, float] = {Engine.NIM: 1800.0}
FALLBACK_STARTUP_TIMEOUT_S = 600.0

# The setting that tells each runtime how to start; it is also the setting only that runtime takes.
_START_SETTING: Mapping[RuntimeKind, str] = {
    RuntimeKind.COMPOSE: "compose",
    RuntimeKind.DOCKER: "docker",
    RuntimeKind.PROCESS: "load_command",
    RuntimeKind.SWARM: "swarm",
    RuntimeKind.KUBERNETES: "kubernetes",
}
_RUNTIME_ONLY: Mapping[str, RuntimeKind] = {
    **{setting: runtime for runtime, setting in _START_SETTING.items()},
    "workdir": RuntimeKind.PROCESS,
    "manual_start": RuntimeKind.EXTERNAL,
}


def _engine_or_none(value: Any) -> Engine | None:
    try:
        return Engine(value)
    except ValueError:  # reported by the field's own validation
        return None


class ModelSpec(BaseModel):
    """One model server in the catalog."""

    model_config = STRICT

    id: str
    name: Text = Field(default="", validate_default=False)  # default: the id
    url: str  # http(s)://host:port of the server root
    engine: Engine
    runtime: RuntimeKind
    size: str | None = None  # "20B"
    format: str | None = None  # "Safetensors (MXFP4)", "GGUF"
    supports_tools: bool = False
    simulated: bool = False
    description: str | None = None
    notes: str | None = None
    # What /v1/models reports and chat requests send as "model"; default: the id.
    served_model: Text = Field(default="", validate_default=False)
    startup_timeout_s: float = Field(default=FALLBACK_STARTUP_TIMEOUT_S, gt=0)
    # Unload after this long with nothing using it (no request, chat or benchmark); 0 never.
    # Unset: the app's DXG_IDLE_TTL_S, itself off unless set.
    idle_ttl_s: float | None = Field(default=None, ge=0)
    # What the server holds once loaded, the user's estimate; loads that would not fit the
    # memory budget beside what is loaded are refused. Unset: not checked.
    memory_gb: float | None = Field(default=None, gt=0)
    # Make room by unloading the least recently used idle models instead of refusing.
    swap: bool = False
    # The name in ``env`` whose value the server wants as its bearer key (vLLM's --api-key, a
    # remote NIM's key): the app's own clients (chat, benchmarks, the gateway) send it.
    api_key_env: str | None = None
    health_path: str | None = None  # overrides the engine's readiness path
    model_path: Path | None = None  # its existence makes the model "Available"
    # Excluded from dumps so API answers never carry a value that might be a secret.
    env: dict[str, str | None] = Field(default_factory=dict, exclude=True, repr=False)
    load_command: str | None = None
    workdir: Path | None = None
    compose: ComposeSettings | None = None
    docker: DockerSettings | None = None
    swarm: SwarmSettings | None = None
    kubernetes: KubernetesSettings | None = None
    manual_start: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_other_fields(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        model_id = data.get("id")
        if isinstance(model_id, str):
            data.setdefault("name", model_id)
            data.setdefault("served_model", model_id)
        engine = _engine_or_none(data.get("engine"))
        if "startup_timeout_s" not in data and engine is not None:
            data["startup_timeout_s"] = DEFAULT_STARTUP_TIMEOUT_S.get(engine, FALLBACK_STARTUP_TIMEOUT_S)
        base_dir = (info.context or {}).get("base_dir")
        if data.get("runtime") == RuntimeKind.PROCESS and "workdir" not in data and base_dir is not None:
            data["workdir"] = base_dir
        return data

    def idle_after_s(self, default_s: float | None) -> float | None:
        """How long unused before the app unloads it: its own idle_ttl_s, else the app's
        default; None for never (0, neither set, or an external server the app can't stop)."""
        ttl = self.idle_ttl_s if self.idle_ttl_s is not None else default_s
        return ttl if ttl and self.can_load else None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid id; it names log files and containers, so it must "
                f"match {ID_PATTERN} (1-64 of a-z, 0-9, '.', '_', '-', starting with a letter "
                "or digit), e.g. 'gpt-oss-20b'"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _normalise_url(value)

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/', e.g. /v1/health/ready")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        for name, item in value.items():
            if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not an environment variable name: use letters, digits and '_', "
                    "not starting with a digit"
                )
            if item is not None and not is_scalar(item):
                raise ValueError(
                    f"{name}: the value must be text (quote it) or null to take it from the app's environment"
                )
        return value

    @field_validator("load_command")
    @classmethod
    def _load_command(cls, value: str | None) -> str | None:
        if value is not None:
            _split_command(value)
        return value

    @field_validator("model_path", "workdir")
    @classmethod
    def _path_from_catalog_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @model_validator(mode="after")
    def _runtime_settings_match(self) -> ModelSpec:
        problems: list[tuple[str, str]] = []
        if self.api_key_env is not None and self.api_key_env not in self.env:
            problems.append(
                (
                    "api_key_env",
                    f"names {self.api_key_env!r}, which env does not list; add "
                    f"'env: {{{self.api_key_env}: null}}' to take it from the app's environment",
                )
            )
        for setting, runtime in _RUNTIME_ONLY.items():
            if getattr(self, setting) is not None and runtime is not self.runtime:
                problems.append(
                    (setting, f"only applies to runtime {runtime}, but this model has runtime {self.runtime}")
                )
        needed = _START_SETTING.get(self.runtime)
        if needed is not None and getattr(self, needed) is None:
            problems.append((needed, f"is required with runtime {self.runtime}; {_NEEDS[self.runtime]}"))
        published = {RuntimeKind.DOCKER: self.docker, RuntimeKind.SWARM: self.swarm}.get(self.runtime)
        if published is not None and self.port not in published.ports.values():
            problems.append(
                (
                    f"{self.runtime}.ports",
                    f"no entry publishes the url's port {self.port}; add e.g. "
                    f"'{self.port}:8000' so the app can reach the server",
                )
            )
        if problems:
            raise SpecProblems(problems)
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def port(self) -> int:
        """The host port the server answers on, taken from ``url``."""
        port = urlsplit(self.url).port
        assert port is not None  # the url validator demands one
        return port

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def can_load(self) -> bool:
        """True when the app knows how to start this server (every runtime but external)."""
        setting = _START_SETTING.get(self.runtime)
        return setting is not None and getattr(self, setting) is not None

    def argv(self, python: str | None = None) -> list[str]:
        """The process runtime's command line, with ``{python}`` replaced by ``python``.

        ``python`` defaults to the interpreter running the app.
        """
        if self.load_command is None:
            raise ValueError(f"model {self.id!r} has no load_command (runtime {self.runtime})")
        words = _split_command(self.load_command)
        if words[0] == PYTHON_PLACEHOLDER:
            words[0] = python or sys.executable
        return words

    def resolved_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``env`` with each null taken from ``environ``; names absent there are left out."""
        resolved: dict[str, str] = {}
        for name, value in self.env.items():
            if value is None:
                value = environ.get(name)
            if value is not None:
                resolved[name] = value
        return resolved

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The server's bearer key (``api_key_env``'s value), or None when it wants none."""
        if self.api_key_env is None:
            return None
        return self.resolved_env(environ).get(self.api_key_env)

    def missing_env(self, environ: Mapping[str, str]) -> list[str]:
        """Names declared as null (pass-through) that ``environ`` doesn't provide."""
        return [name for name, value in self.env.items() if value is None and name not in environ]


_NEEDS: Mapping[RuntimeKind, str] = {
    RuntimeKind.COMPOSE: "add 'compose: {file: compose/nim.yaml, service: <name>}'",
    RuntimeKind.DOCKER: "add 'docker: {image: <image>, ports: {<container port>: <host port>}}'",
    RuntimeKind.PROCESS: "add the command that starts the server, e.g. 'llama-server -m m.gguf --port 8100'",
    RuntimeKind.SWARM: (
        "add 'swarm: {image: <image>, node: <dxg.host label or node id>, ports: {<container port>: <port>}}'"
    ),
    RuntimeKind.KUBERNETES: "add 'kubernetes: {image: <image>, namespace: <namespace>}'",
}

MISSING_HINTS: Mapping[str, str] = {
    "id": "give a short name like 'gpt-oss-20b'",
    "url": "give the server's base URL, e.g. http://127.0.0.1:8000",
    "engine": f"use one of: {', '.join(Engine)}",
    "runtime": f"say how the server is started, one of: {', '.join(RuntimeKind)}",
    "compose.file": "give the compose file, relative to the catalog's folder, e.g. compose/nim.yaml",
    "compose.service": "give the service name inside the compose file",
    "docker.image": "give the image to run, e.g. nvcr.io/nim/openai/gpt-oss-20b:latest",
    "swarm.image": "give the image to run; it must be on the node already",
    "swarm.node": (
        "give the node's dxg.host label value (docker node update --label-add dxg.host=NAME) or its id"
    ),
    "kubernetes.image": "give the image to run, e.g. nvcr.io/nim/openai/gpt-oss-20b:latest",
}

# Where an unknown field sits decides which fields to list as allowed.
_SECTIONS: Mapping[tuple[str, ...], type[BaseModel]] = {
    (): ModelSpec,
    ("compose",): ComposeSettings,
    ("docker",): DockerSettings,
    ("swarm",): SwarmSettings,
    ("kubernetes",): KubernetesSettings,
}


def _normalise_url(value: str) -> str:
    example = "write it like http://127.0.0.1:8000"
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host; {example}")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials; keep secrets in env")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        raise ValueError(f"{value!r} has no port; the port tells the app where to probe, {example}")
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r} has an invalid port; use 1-65535, {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} must be the server root without a path such as /v1; {example}")
    return f"{parts.scheme}://{parts.netloc}"


def _split_command(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError as exc:  # shlex says "No closing quotation"
        raise ValueError(f"cannot be split into words: {exc} (check the quotes)") from None
    if not words or not words[0]:
        raise ValueError("is empty; give the command that starts the server")
    if PYTHON_PLACEHOLDER in words[1:]:
        raise ValueError(f"{PYTHON_PLACEHOLDER} is only replaced as the first word (the program to run)")
    return words


@dataclass(frozen=True)
class Catalog:
    """The validated models in file order, plus warnings worth showing but not fatal."""

    path: Path
    models: Mapping[str, ModelSpec]
    warnings: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.models

    def __getitem__(self, model_id: str) -> ModelSpec:
        return self.models[model_id]

    def get(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)

    @property
    def ids(self) -> list[str]:
        return list(self.models)


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog; raise CatalogError listing every problem at once."""
    path = Path(path)
    data, problems = read_yaml(path)
    entries = _model_entries(data, problems)
    manager = _swarm_manager(data, problems)
    context = {"base_dir": path.resolve().parent}
    specs: dict[str, ModelSpec] = {}
    lines: dict[str, int | None] = {}
    first_use: dict[str, str] = {}
    compose_cache: dict[Path, tuple[list[str], str | None]] = {}
    for index, raw in enumerate(entries, start=1):
        label = _label(raw, index)
        line = raw.line if isinstance(raw, LocatedDict) else None
        if not isinstance(raw, Mapping):
            problems.append(Problem(f"must be a mapping of fields (id, url, ...), not {kind_of(raw)}", label))
            continue
        model_id = raw.get("id")
        duplicate = isinstance(model_id, str) and model_id in first_use
        if duplicate:
            problems.append(
                Problem(
                    f"duplicate id {model_id!r}: {first_use[model_id]} already uses it; ids must be unique",
                    label,
                    "id",
                    line_of(raw, ("id",)),
                )
            )
        elif isinstance(model_id, str):
            first_use[model_id] = f"model #{index}" + (f" at line {line}" if line else "")
        try:
            spec = ModelSpec.model_validate(_with_manager(raw, manager), context=context)
        except ValidationError as exc:
            problems += describe_validation_error(
                exc, _SECTIONS, MISSING_HINTS, label, lambda loc, raw=raw: line_of(raw, loc)
            )
            continue
        for field_name, message in reference_problems(spec, compose_cache):
            problems.append(Problem(message, label, field_name, line_of(raw, tuple(field_name.split(".")))))
        if not duplicate:
            specs[spec.id] = spec
            lines[spec.id] = line
    if problems:
        raise CatalogError(path, problems)
    return Catalog(path, specs, tuple(w.render(path) for w in catalog_warnings(list(specs.values()), lines)))


TOP_LEVEL_KEYS: Final = ("models", "swarm_manager")


def _swarm_manager(data: Any, problems: list[Problem]) -> str | None:
    """The catalog-wide Swarm manager endpoint, for swarm entries that name none themselves."""
    value = data.get("swarm_manager") if isinstance(data, Mapping) else None
    if value is None:
        return None
    line = data.key_lines.get("swarm_manager") if isinstance(data, LocatedDict) else None
    try:
        return check_endpoint(value if isinstance(value, str) else repr(value))
    except ValueError as exc:
        problems.append(Problem(f"swarm_manager: {exc}", line=line))
        return None


def _with_manager(raw: Any, manager: str | None) -> Any:
    swarm = raw.get("swarm") if isinstance(raw, Mapping) else None
    if manager is None or not isinstance(swarm, Mapping) or "manager" in swarm:
        return raw
    return {**raw, "swarm": {**swarm, "manager": manager}}


def _model_entries(data: Any, problems: list[Problem]) -> list[Any]:
    """The raw entries under ``models:``; shape problems go to ``problems``."""
    shape = "a mapping with a 'models:' list at the top"
    if data is None:
        problems.append(Problem(f"the catalog is empty; it must be {shape}"))
        return []
    if not isinstance(data, Mapping):
        problems.append(Problem(f"the catalog must be {shape}, not {kind_of(data)}"))
        return []
    key_lines = data.key_lines if isinstance(data, LocatedDict) else {}
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                Problem(
                    f"unknown top-level key {key!r}; the allowed keys are {', '.join(TOP_LEVEL_KEYS)}",
                    line=key_lines.get(key),
                )
            )
    if "models" not in data:
        problems.append(Problem(f"there is no 'models:' list; the catalog must be {shape}"))
        return []
    models = data["models"]
    if models is None:
        return []
    if not isinstance(models, list):
        problems.append(
            Problem(
                f"'models' must be a list of entries, each starting with '- id: ...', not {kind_of(models)}",
                line=key_lines.get("models"),
            )
        )
        return []
    return models


def _label(raw: Any, index: int) -> str:
    """Name a model by its id when that id is usable, else by its position (#1 is the first)."""
    model_id = raw.get("id") if isinstance(raw, Mapping) else None
    if isinstance(model_id, str) and _ID_RE.fullmatch(model_id):
        return f"model {model_id!r}"
    return f"model #{index}"
