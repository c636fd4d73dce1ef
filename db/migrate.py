"""Run Alembic migrations from code: the app upgrades its database at start."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config

from db.session import ensure_sqlite_dir

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
ALEMBIC_INI: Final = REPO_ROOT / "alembic.ini"


def alembic_config(db_url: str) -> Config:
    """The repo's Alembic config, pointed at ``db_url`` and independent of the working directory."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    # The ini file's values go through configparser interpolation: '%' must be doubled.
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    # Leave the app's logging alone; env.py configures logging for the CLI only.
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(db_url: str) -> None:
    ensure_sqlite_dir(db_url)
    command.upgrade(alembic_config(db_url), "head")


def downgrade_to(db_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(db_url), revision)
