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

from lifecycle.core.policy import RestartPolicy

_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# The restart figures have one source, the policy's own defaults; these fields only name them.
_RESTART = RestartPolicy()
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - recognised, not bound


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
    run_dir: Path = Field(default=Path("data/run"), description="Pidfiles of the servers this app started.")
    host: str = Field(default="127.0.0.1", description="Address the app binds to.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the app listens on.")
    api_token: SecretStr | None = Field(default=None, description="Bearer token required on /api.")
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated Host names the app answers to besides loopback and DXG_HOST.",
    )
    instance: str = Field(default="", description="Names this instance's containers and processes.")
    # Restart policy: the figures DESIGN.md gives; Docker's own (100 ms .. 60 s) is too eager for
    # servers whose start takes minutes, Kubernetes' (10 s .. 300 s) too slow for a desk.
    restart_initial_s: float = Field(
        default=_RESTART.initial_s, gt=0, description="First restart delay after a crash."
    )
    restart_factor: float = Field(
        default=_RESTART.factor, ge=1, description="Each further restart waits this much longer."
    )
    restart_max_s: float = Field(default=_RESTART.max_s, gt=0, description="Longest restart delay.")
    restart_reset_after_s: float = Field(
        default=_RESTART.reset_after_s,
        ge=0,
        description="Ready this long before a crash: the delay starts over.",
    )
    crash_limit: int = Field(
        default=_RESTART.crash_limit,
        ge=1,
        description="This many crashes within crash_window_s: give up (failed).",
    )
    crash_window_s: float = Field(
        default=_RESTART.crash_window_s, gt=0, description="Window counted for crash_limit."
    )
    tick_s: float = Field(default=1.0, gt=0, description="How often the reconciler re-checks every server.")
    fast_tick_s: float = Field(
        default=0.25, gt=0, description="The reconciler's interval while a server starts or stops."
    )
    stop_grace_s: float = Field(
        default=10.0, ge=0, description="SIGTERM / docker stop, then a kill after this long."
    )
    liveness_period_s: float = Field(
        default=10.0, gt=0, description="How often a ready server's health endpoint is asked."
    )
    liveness_timeout_s: float = Field(
        default=10.0, gt=0, description="How long one liveness probe waits: generous, a busy server is slow."
    )
    liveness_failures: int = Field(
        default=3, ge=1, description="Liveness probes failed in a row before a server counts as hung."
    )
    keep_running_on_exit: bool = Field(
        default=False, description="Leave servers running when the app exits; the next start adopts them."
    )
    catalog_poll_s: float = Field(
        default=1.0, gt=0, description="How often models.yaml is checked for changes."
    )
    idle_ttl_s: float | None = Field(
        default=None,
        gt=0,
        description="Unload a model nothing has used for this long; a model's idle_ttl_s overrides it.",
    )
    memory_budget_gb: float | None = Field(
        default=None,
        gt=0,
        description="Memory the models' memory_gb may add up to; unset: free GPU memory, else MemAvailable.",
    )
    gateway_cancel_abandoned_loads: bool = Field(
        default=False,
        description="Unload a model the gateway was loading once every request waiting for it has left.",
    )
    gateway_load_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest a /v1 request waits for its model to load; unset: the model's startup timeout.",
    )

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

    def app_url(self) -> str:
        """Where this machine reaches the running app (the command lines talk to it here)."""
        # A wildcard listen address is not somewhere to connect to; this machine is.
        host = "127.0.0.1" if self.host in _WILDCARDS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def allowed_host_names(self) -> list[str]:
        return [name.strip() for name in self.allowed_hosts.split(",") if name.strip()]

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(
            initial_s=self.restart_initial_s,
            factor=self.restart_factor,
            max_s=self.restart_max_s,
            reset_after_s=self.restart_reset_after_s,
            crash_limit=self.crash_limit,
            crash_window_s=self.crash_window_s,
        )

    def ensure_dirs(self) -> None:
        """Create the log folder and the SQLite file's folder."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = sqlite_path(self.db_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
