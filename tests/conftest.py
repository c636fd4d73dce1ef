"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from settings import Settings
from tests.support import skip_or_fail

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an isolated instance: its own DB, logs and instance name."""
    return Settings(
        db_url=f"sqlite:///{tmp_path / 'dxg.db'}",
        log_dir=tmp_path / "logs",
        run_dir=tmp_path / "run",
        catalog=REPO_ROOT / "models.yaml",
    )


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
