"""``python -m lifecycle.catalog [path]``: check a catalog by hand after editing it."""

from __future__ import annotations

import sys
from pathlib import Path

from lifecycle.catalog.errors import CatalogError
from lifecycle.catalog.schema import load_catalog


def main(argv: list[str] | None = None) -> int:
    """Check a catalog: print its models and warnings (exit 0) or its problems (exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    wants_help = args[:1] in (["-h"], ["--help"])
    if len(args) > 1 or wants_help:
        usage = "usage: python -m lifecycle.catalog [catalog.yaml]   (default: $DXG_CATALOG or models.yaml)"
        print(usage, file=sys.stdout if wants_help else sys.stderr)
        return 0 if wants_help else 2
    if args:
        path = Path(args[0])
    else:
        # Imported here so the catalog itself doesn't depend on the app's settings.
        from settings import Settings

        path = Settings().catalog
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path}: {len(catalog)} models")
    for spec in catalog:
        how = "loadable" if spec.can_load else "manual"
        tags = " simulated" if spec.simulated else ""
        print(f"  {spec.id:<20} {spec.engine:<9} {spec.runtime:<8} {spec.url:<24} {how}{tags}")
    for warning in catalog.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
