"""The model catalog: ``models.yaml`` read into ``ModelSpec`` values, checked, and watched.

- ``schema``: ``ModelSpec``, ``Catalog`` and ``load_catalog`` (the file's shape and rules);
- ``sections``: the per-runtime settings (``docker:``, ``compose:``);
- ``yaml_reader``: YAML with line numbers, so every problem names its line;
- ``checks``: cross-model checks (duplicate ports, compose references);
- ``errors``: the problem list and its wording;
- ``watch``: the live catalog, reloaded when the file changes, keeping the last good one.

Callers import the public names from here; the folder's inside is free to move.
"""

from lifecycle.catalog.errors import CatalogError
from lifecycle.catalog.schema import (
    ID_PATTERN,
    PYTHON_PLACEHOLDER,
    Catalog,
    Engine,
    ModelSpec,
    RuntimeKind,
    load_catalog,
)
from lifecycle.catalog.sections import ComposeSettings, DockerSettings, VolumeMount

__all__ = [
    "ID_PATTERN",
    "PYTHON_PLACEHOLDER",
    "Catalog",
    "CatalogError",
    "ComposeSettings",
    "DockerSettings",
    "Engine",
    "ModelSpec",
    "RuntimeKind",
    "VolumeMount",
    "load_catalog",
]
