"""The actual values of the secrets this app hands to servers, masked wherever text goes out.

Pattern-based redaction (``events.redact_text``) catches ``NGC_API_KEY=...`` and ``Bearer ...``
but not a server that prints ``using key <value>`` or ``{ngc: <value>}``. So every secret value
the app passes on (catalog env entries taken from the environment, and entries whose names say
KEY, TOKEN, SECRET or PASSWORD) is remembered here, and ``mask`` replaces each occurrence of
any of them, whatever surrounds it. Pure: values in, text out; the runtimes do the remembering.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Final

REDACTED: Final = "***"
# Shorter values would mask ordinary words and numbers; no real key is this short.
MIN_CHARS: Final = 6
_SECRET_NAME_RE: Final = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)")


class SecretValues:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def remember(self, values: Iterable[str]) -> None:
        fresh = {v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_CHARS}
        with self._lock:
            if fresh <= self._values:
                return
            self._values |= fresh
            # Longest first, so a value that contains another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text

    def forget_all(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


def secret_env_values(declared: Mapping[str, str | None], resolved: Mapping[str, str]) -> list[str]:
    """The values in ``resolved`` (a server's environment) that are secrets: those the catalog
    takes from the app's environment (declared as null) and those under secret-looking names."""
    return [
        value
        for name, value in resolved.items()
        if declared.get(name, "") is None or _SECRET_NAME_RE.search(name)
    ]


# The process's one registry: every redaction point reads it.
KNOWN: Final = SecretValues()
