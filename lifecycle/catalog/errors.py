"""Catalog problems and how they are worded.

Every problem becomes one self-contained line, ``file:line: model 'id', field 'x': what is
wrong and what is allowed``, so a user editing the YAML by hand can fix all of them in one pass
and never sees a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the catalog, located as precisely as the input allows."""

    message: str
    model: str | None = None  # "model 'gpt-oss-20b'" or "model #3"
    field: str | None = None  # dotted path inside the model entry, e.g. "compose.file"
    line: int | None = None  # 1-based line in the catalog file

    def render(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line else str(path)
        subject = ", ".join(
            part for part in (self.model, f"field '{self.field}'" if self.field else None) if part is not None
        )
        return f"{where}: {subject}: {self.message}" if subject else f"{where}: {self.message}"


class SpecProblems(ValueError):
    """Raised from a model validator to report several cross-field problems at once.

    Pydantic puts a validator's exception in the error's ``ctx``; carrying (field, message)
    pairs lets each problem name its own field instead of the whole model.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = list(problems)


class CatalogError(Exception):
    """The catalog can't be used. ``str()`` gives one problem per line, each naming the file."""

    def __init__(self, path: Path, problems: Iterable[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        self.lines = [problem.render(path) for problem in self.problems]
        super().__init__("\n".join(self.lines))


def field_path(loc: Sequence[int | str]) -> str:
    """("docker", "volumes", 1) -> "docker.volumes[1]"."""
    text = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself was invalid"
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def describe_validation_error(
    error: ValidationError,
    sections: Mapping[tuple[str, ...], type[BaseModel]],
    missing_hints: Mapping[str, str],
    model: str,
    line_of: Callable[[tuple[int | str, ...]], int | None],
) -> list[Problem]:
    """Turn pydantic's errors for one model entry into our wording.

    ``sections`` maps a location prefix to the pydantic class validating it, so an unknown
    field can list the fields allowed right there; ``missing_hints`` says what to write for a
    missing field, keyed by its dotted path. ``line_of(loc)`` finds the YAML line.
    """
    problems: list[Problem] = []
    for detail in error.errors():
        loc = tuple(detail["loc"])
        ctx_error = detail.get("ctx", {}).get("error")
        if isinstance(ctx_error, SpecProblems):
            for field, message in ctx_error.problems:
                problems.append(Problem(message, model, field, line_of(tuple(field.split(".")))))
            continue
        if detail["type"] == "extra_forbidden":
            field, message = _unknown_field(loc, sections)
        elif detail["type"] == "invalid_key":
            field, message = field_path((*loc[:-1], str(loc[-1]))), "is not a field name; names are text"
        else:
            field, message = field_path(loc), _message(detail, missing_hints)
        problems.append(Problem(message, model, field or None, line_of(loc)))
    return problems


def _unknown_field(
    loc: tuple[int | str, ...], sections: Mapping[tuple[str, ...], type[BaseModel]]
) -> tuple[str, str]:
    parent, name = loc[:-1], str(loc[-1])
    section = sections.get(tuple(str(part) for part in parent))
    allowed = sorted(section.model_fields) if section else []
    message = "unknown field"
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    if allowed:
        where = f" in '{field_path(parent)}'" if parent else ""
        message += f"; allowed fields{where}: {', '.join(allowed)}"
    return field_path(loc), message


def _message(detail: ErrorDetails, missing_hints: Mapping[str, str]) -> str:
    kind = detail["type"]
    ctx = detail.get("ctx", {})
    got = detail.get("input")
    if kind == "missing":
        # An example of what to write beats a bare "field required".
        hint = missing_hints.get(field_path(detail["loc"]))
        return f"is required; {hint}" if hint else "is required"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "enum":
        allowed = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{got!r} is not allowed; use one of: {allowed}"
    # Pydantic would name our classes and Python types; a YAML author thinks in mappings and lists.
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping (name: value, ...), not {kind_of(got)}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (- item, ...), not {kind_of(got)}"
    return f"{detail['msg']} (got {got!r})"


def kind_of(value: object) -> str:
    """What a YAML author would call this value."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true/false"
    names = {list: "a list", dict: "a mapping", str: "text", int: "a number", float: "a number"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__
