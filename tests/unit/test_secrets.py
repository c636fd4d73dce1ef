"""Masking the values of the secrets the app hands out, whatever text surrounds them."""

from __future__ import annotations

from lifecycle.core.events import redact_text
from lifecycle.core.secrets import KNOWN, SecretValues, secret_env_values


def test_every_occurrence_is_masked_longest_first() -> None:
    values = SecretValues()
    values.remember(["abc12345", "abc12345-more", "short"])
    text = "using key abc12345-more, then {ngc: abc12345} and 'short' stays"
    assert values.mask(text) == "using key ***, then {ngc: ***} and 'short' stays"


def test_which_env_values_are_secrets() -> None:
    declared = {"NGC_API_KEY": None, "HF_TOKEN": "hf-value-1", "MODEL_DIR": "/models", "PASSTHRU": None}
    resolved = {"NGC_API_KEY": "nvapi-x", "HF_TOKEN": "hf-value-1", "MODEL_DIR": "/models", "PASSTHRU": "p-1"}
    assert sorted(secret_env_values(declared, resolved)) == ["hf-value-1", "nvapi-x", "p-1"]


def test_redact_text_masks_the_remembered_values() -> None:
    KNOWN.remember(["unit-canary-5e6f7a8b"])
    assert redact_text("the server said unit-canary-5e6f7a8b twice: unit-canary-5e6f7a8b") == (
        "the server said *** twice: ***"
    )
