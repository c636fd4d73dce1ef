"""What a missing image tells the user to do depends on where the image comes from."""

from __future__ import annotations

import pytest

from lifecycle.core.policy import RestartPolicy
from lifecycle.runtimes.protocol import LOCAL_BUILDS, ImageMissing, image_advice
from settings import Settings
from simulator.image.build import TAG as SIM_TAG


def test_the_simulator_image_is_built_not_pulled() -> None:
    message = str(ImageMissing(SIM_TAG))
    assert "`make sim-image`" in message
    assert "docker pull" not in message


def test_every_image_the_project_builds_is_known_as_a_local_build() -> None:
    assert SIM_TAG in LOCAL_BUILDS


@pytest.mark.parametrize(
    "image", ["nvcr.io/nim/openai/gpt-oss-20b:latest", "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3"]
)
def test_ngc_images_need_a_login_with_the_ngc_key_then_a_pull(image: str) -> None:
    advice = image_advice(image)
    assert advice.index("docker login nvcr.io") < advice.index(f"docker pull {image}")
    assert "NGC API key" in advice


@pytest.mark.parametrize(
    "image", ["ghcr.io/ggml-org/llama.cpp:server", "vllm/vllm-openai:v0.11.0", "nvcr.iox/a:b"]
)
def test_other_images_are_pulled(image: str) -> None:
    assert image_advice(image) == f"Pull it first: `docker pull {image}`."


def test_restart_defaults_have_one_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RESTART_INITIAL_S", "RESTART_FACTOR", "RESTART_MAX_S", "RESTART_RESET_AFTER_S"):
        monkeypatch.delenv(f"DXG_{name}", raising=False)
    monkeypatch.delenv("DXG_CRASH_LIMIT", raising=False)
    monkeypatch.delenv("DXG_CRASH_WINDOW_S", raising=False)
    assert Settings().restart_policy() == RestartPolicy()
