"""Incremental server-sent-events decoding: bytes in as they arrive, data payloads out."""

from __future__ import annotations


class SSEDecoder:
    """Splits a byte stream into the ``data`` payloads of complete events.

    Bytes may arrive cut anywhere (mid-line, mid-UTF-8 character); only whole
    events are returned. Comment lines (``:``) and other fields are ignored;
    several ``data`` lines in one event are joined with newlines, per the spec.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        payloads: list[str] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return payloads
            raw, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if self._data:
                    payloads.append("\n".join(self._data))
                    self._data = []
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value.removeprefix(" "))

    @property
    def pending(self) -> bool:
        """True if bytes or data lines are waiting for the end of their event."""
        return bool(self._buffer.strip() or self._data)
