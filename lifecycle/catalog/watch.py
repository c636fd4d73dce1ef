"""The catalog as the app currently uses it, re-read when models.yaml changes on disk.

A broken edit never takes models away: the last good catalog stays in use and the error (file,
model, field) is kept for the UI and ``/api/health``. A catalog that was never good reads as
empty, and ``good`` stays False so nobody mistakes "not readable" for "every model removed".
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from lifecycle.catalog.schema import Catalog, CatalogError, load_catalog

log = logging.getLogger(__name__)

Signature = tuple[int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class CatalogHolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._catalog = Catalog(self.path, {})
        self._good = False
        self._error: str | None = None
        self._signature: Signature | tuple[str] = ("never read",)
        self._lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def good(self) -> bool:
        """A catalog file was read successfully at least once."""
        return self._good

    @property
    def error(self) -> str | None:
        """Why the current file can't be used; None when it is the catalog in use."""
        return self._error

    def reload(self) -> bool:
        """Read the file now; True when the catalog in use changed."""
        with self._lock:
            return self._read(_signature(self.path))

    def reload_if_changed(self) -> bool:
        """Re-read the file if its mtime, size or inode changed; True when the catalog in use changed."""
        signature = _signature(self.path)
        with self._lock:
            if signature == self._signature:
                return False
            return self._read(signature)

    def _read(self, signature: Signature) -> bool:
        self._signature = signature
        try:
            catalog = load_catalog(self.path)
        except CatalogError as exc:
            if str(exc) != self._error:
                log.warning("catalog %s is not usable, keeping the last good one:\n%s", self.path, exc)
            self._error = str(exc)
            return False
        except OSError as exc:  # unreadable file: permissions, a directory, ...
            self._error = f"{self.path}: cannot be read: {exc.strerror or exc}"
            return False
        changed = not self._good or catalog.models != self._catalog.models
        self._catalog, self._good, self._error = catalog, True, None
        return changed
