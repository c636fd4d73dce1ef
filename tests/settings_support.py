"""Settings for tests: an isolated instance (own database, logs, pidfiles and instance name) and
one set of short figures for tests about sequences rather than figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from db.migrate import upgrade_to_head
from settings import Settings
from tests.support import REPO_ROOT

# The 2 s .. 60 s restart policy would make a five-crash loop take a minute; ticks this short
# make the reconciler notice within a tenth of a second.
FAST: Final[dict[str, Any]] = {
    "restart_initial_s": 0.05,
    "restart_factor": 2.0,
    "restart_max_s": 1.0,
    "stop_grace_s": 5.0,
    "catalog_poll_s": 0.1,
    "tick_s": 0.25,
    "fast_tick_s": 0.1,
}


def isolated_settings(root: Path, name: str = "dxg", catalog: Path = REPO_ROOT / "models.yaml") -> Settings:
    """An app instance of its own under ``root``: two of them never see each other's servers."""
    root.mkdir(parents=True, exist_ok=True)
    return Settings(
        db_url=f"sqlite:///{root / f'{name}.db'}",
        log_dir=root / "logs",
        run_dir=root / "run",
        catalog=catalog,
    )


def make_settings(base: Settings, catalog: Path, **overrides: Any) -> Settings:
    """``base`` over ``catalog`` with the ``FAST`` figures (and ``overrides``), its database migrated."""
    settings = base.model_copy(update={"catalog": catalog, **FAST, **overrides})
    upgrade_to_head(settings.db_url)
    return settings
