"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from settings import Settings, get_settings
from tests.settings_support import isolated_settings
from tests.support import REPO_ROOT, REQUIRE_GATES, skip_or_fail

ARTIFACTS = REPO_ROOT / "test-artifacts"
SETTINGS_PREFIX = "DXG_"


def outer_settings() -> list[str]:
    """The app's DXG_* settings in this process's environment; the require gates are not among
    them (they describe the machine, not the app)."""
    return [name for name in os.environ if name.startswith(SETTINGS_PREFIX) and name not in REQUIRE_GATES]


def pytest_configure(config: pytest.Config) -> None:
    """The DXG_* settings of the shell that runs pytest (a token, keep-running-on-exit, another
    database) reach no test, no fixture of any scope and no process a test starts."""
    for name in outer_settings():
        del os.environ[name]


@pytest.fixture(autouse=True)
def no_outer_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the defaults, whatever an earlier one left; a test that wants a
    variable sets it itself (monkeypatch undoes it)."""
    for name in outer_settings():
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an isolated instance: its own DB, logs and instance name."""
    return isolated_settings(tmp_path)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A connected Docker SDK client, or a skip (a failure when DXG_REQUIRE_DOCKER=1)."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        skip_or_fail("DXG_REQUIRE_DOCKER", f"no Docker engine answers: {exc}")
    yield client
    client.close()


def _built_sim_image() -> str:
    from simulator.image.build import build_image

    return build_image().tag  # skips the build when the image is up to date


@pytest.fixture(scope="session")
def sim_image(docker_client: object) -> str:
    """The simulator's image, built here when missing or out of date (``make sim-image`` does the
    same). Every test that runs it asks for this fixture: a fresh machine has no such image."""
    return _built_sim_image()


@pytest.fixture(scope="session")
def compose_sim_image(docker_client: object) -> str:
    """The simulator's image for compose tests; a skip (a failure under DXG_REQUIRE_DOCKER) without a
    compose tool. Compose test modules name it ``sim_image`` for their tests."""
    from lifecycle.runtimes.composecli import detect_tool

    if detect_tool() is None:
        skip_or_fail("DXG_REQUIRE_DOCKER", "neither `docker compose` nor `docker-compose` is installed")
    return _built_sim_image()
