"""Reading the catalog YAML with line numbers.

Plain ``yaml.safe_load`` forgets where things were and silently keeps the last of two equal
keys. Mappings here remember the line of each key, so errors can point at ``models.yaml:14``,
and repeated keys are reported instead of swallowed.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from lifecycle.catalog.errors import CatalogError, Problem

_MERGE_TAG = "tag:yaml.org,2002:merge"


class LocatedDict(dict[Any, Any]):
    """A YAML mapping that knows the line of itself and of each of its keys (1-based)."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated_keys: list[Problem] = []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    # Only keys written out count as repeats: a '<<: *anchor' merge is allowed to be overridden.
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            if key_node.value in seen:
                loader.repeated_keys.append(
                    Problem(
                        f"key '{key_node.value}' appears twice in the same mapping; YAML would keep "
                        "only the last one, so remove one of them",
                        line=key_node.start_mark.line + 1,
                    )
                )
            seen.add(key_node.value)
    loader.flatten_mapping(node)
    result = LocatedDict(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> tuple[Any, list[Problem]]:
    """The parsed document and any repeated keys; a CatalogError if it can't be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(
            path,
            [Problem("catalog file not found; create it or point DXG_CATALOG at the right file")],
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CatalogError(path, [Problem(f"cannot read the catalog: {reason}")]) from None
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise CatalogError(path, [_yaml_problem(exc)]) from None
    except yaml.YAMLError as exc:
        raise CatalogError(path, [Problem(f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return data, loader.repeated_keys


def _yaml_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    if mark is None:
        return Problem(f"invalid YAML: {what}")
    # PyYAML counts from 0; editors count from 1.
    return Problem(
        f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what} "
        "(check the indentation and quoting around there)",
        line=mark.line + 1,
    )


def line_of(node: Any, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest part of ``loc`` inside ``node`` that the YAML recorded."""
    line = node.line if isinstance(node, LocatedDict) else None
    for part in loc:
        if isinstance(node, LocatedDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            line = node.line if isinstance(node, LocatedDict) else line
        else:
            break
    return line
