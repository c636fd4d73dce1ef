"""Checks that look beyond a single model entry: files it points at, and clashes between models.

Kept apart from the schema because they read other files (compose files) or need the whole
catalog (ports), while the schema validates one entry on its own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lifecycle.catalog.errors import Problem

if TYPE_CHECKING:
    from lifecycle.catalog.schema import ModelSpec

# Env names that usually hold credentials; their values belong in the environment, not the file.
_SECRET_NAME_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)

ComposeCache = dict[Path, tuple[list[str], str | None]]


def reference_problems(spec: ModelSpec, cache: ComposeCache) -> list[tuple[str, str]]:
    """(field, message) for files the entry names that don't exist or don't fit."""
    if spec.compose is None:
        return []
    file = spec.compose.file
    if file not in cache:
        cache[file] = _compose_services(file)
    services, error = cache[file]
    if error is not None:
        return [("compose.file", error)]
    if spec.compose.service not in services:
        defined = ", ".join(services) or "no services"
        return [
            ("compose.service", f"{spec.compose.service!r} is not a service in {file}; it defines: {defined}")
        ]
    return []


def _compose_services(file: Path) -> tuple[list[str], str | None]:
    """The service names in a compose file, or why they can't be read."""
    try:
        data: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], f"compose file {file} not found (a relative path starts at the catalog's folder)"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [], f"cannot read compose file {file}: {reason}"
    services = data.get("services") if isinstance(data, Mapping) else None
    if not isinstance(services, Mapping):
        return [], f"compose file {file} has no 'services:' mapping"
    return [str(name) for name in services], None


def catalog_warnings(specs: Sequence[ModelSpec], lines: Mapping[str, int | None]) -> list[Problem]:
    """Things that work but probably aren't meant: shared ports, secrets in the file, odd commands."""
    warnings = _port_clashes(specs, lines)
    for spec in specs:
        label, line = f"model {spec.id!r}", lines.get(spec.id)
        for name, value in spec.env.items():
            if value is not None and _SECRET_NAME_RE.search(name):
                warnings.append(
                    Problem(
                        f"has a value written in the catalog; if it is a secret, write '{name}: null' "
                        "and set it in the app's environment instead",
                        label,
                        f"env.{name}",
                        line,
                    )
                )
        if spec.load_command is not None and str(spec.port) not in spec.load_command:
            warnings.append(
                Problem(
                    f"doesn't mention port {spec.port} from the url; make sure the server listens there",
                    label,
                    "load_command",
                    line,
                )
            )
    return warnings


def _port_clashes(specs: Sequence[ModelSpec], lines: Mapping[str, int | None]) -> list[Problem]:
    # Only models the app starts can collide; an external server's port is the user's business.
    by_port: dict[int, list[str]] = defaultdict(list)
    for spec in specs:
        if spec.can_load:
            by_port[spec.port].append(spec.id)
    return [
        Problem(
            f"models {_join(ids)} share port {port}; only one of them can be loaded at a time",
            line=lines.get(ids[1]),
        )
        for port, ids in by_port.items()
        if len(ids) > 1
    ]


def _join(ids: Sequence[str]) -> str:
    quoted = [repr(model_id) for model_id in ids]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]
