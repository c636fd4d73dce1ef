"""Application settings, read from ``DXG_*`` environment variables.

Every component takes a ``Settings`` instance instead of reading the
environment itself, so tests can run isolated instances side by side.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def sqlite_path(db_url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL, or None for other databases and in-memory ones."""
    prefix = "sqlite:///"
    if not db_url.startswith(prefix):
        return None
    raw = db_url[len(prefix) :].split("?", 1)[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw)


def default_instance(db_url: str) -> str:
    """A short, stable name derived from the DB location.

    Two app instances with different databases get different names, so they
    never adopt or stop each other's containers and processes.
    """
    path = sqlite_path(db_url)
    key = str(path.resolve()) if path is not None else db_url
    return "i" + hashlib.sha256(key.encode()).hexdigest()[:8]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DXG_", extra="ignore")

    catalog: Path = Field(default=Path("models.yaml"), description="Path of the model catalog.")
    db_url: str = Field(default="sqlite:///data/dxg.db", description="SQLAlchemy URL of the event store.")
    log_dir: Path = Field(default=Path("logs"), description="Where logs/{model_id}.log are written.")
    host: str = Field(default="127.0.0.1", description="Address the app binds to.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the app listens on.")
    api_token: SecretStr | None = Field(default=None, description="Bearer token required on /api.")
    instance: str = Field(default="", description="Names this instance's containers and processes.")

    @model_validator(mode="after")
    def _derive_instance(self) -> Settings:
        if not self.instance:
            self.instance = default_instance(self.db_url)
        elif not _INSTANCE_RE.match(self.instance):
            raise ValueError(
                f"DXG_INSTANCE={self.instance!r} is not allowed: use 1-32 characters "
                "from a-z, 0-9, '_' and '-', starting with a letter or digit"
            )
        return self

    def ensure_dirs(self) -> None:
        """Create the log folder and the SQLite file's folder."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = sqlite_path(self.db_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
