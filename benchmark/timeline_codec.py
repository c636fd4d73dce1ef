"""A request's frame timeline (arrival ns, bytes, channel per SSE frame) as a compact blob.

A run keeps every frame of every request so that any metric can be recomputed
later; at thousands of requests of hundreds of frames each, three JSON lists
would cost ~30 bytes per frame. This packs them to about 4 bytes per frame and
round-trips exactly (nanoseconds included). Pure stdlib: the db package stores
these blobs and must stay light (no numpy).

Layout (integers are LEB128 varints unless said otherwise; "zz" = zigzag, so a
negative value costs a bit, not a failure)::

    byte     header: format version (low 7 bits) | 0x80 when the body is zlib-compressed
    4 bytes  CRC-32 of the uncompressed body, little-endian: corruption is refused, not decoded
    body:
      n                         frame count
      zz(frame_ns[0])           the first arrival (the request's TTFR-ish), when n > 0
      column(gaps)              frame_ns[i] - frame_ns[i-1], n - 1 values
      column(frame_bytes)       n values
      channels                  mode byte, then 2-bit codes 4 per byte, or (channel byte, length) runs

    column = zz(min), width byte k, the values minus min packed in k bits each (8 values make
    k bytes), then the exceptions: count, and per exception (index gap, value >> k).

Why frame-of-reference bit packing and not one varint per gap: arrival gaps of
10-30 ms are ~25 bits of real nanosecond noise, which a varint spends 4 bytes
on (7 bits per byte) and zlib barely shrinks; packing at the width the request
actually needs spends ~3. Exceptions ("patched" packing) keep one stall in a
stream from widening every other gap. Channels come in long runs (role frame,
reasoning, answer, finish), so runs usually cost a few bytes per request.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Sequence
from itertools import groupby
from typing import Final, NamedTuple

FORMAT_VERSION: Final = 1
_ZLIB_FLAG: Final = 0x80
_CRC_BYTES: Final = 4
# A bound on what a blob may claim, so a corrupt count can't make decode allocate gigabytes. A
# million frames is far beyond any stream a server sends (one frame per token at most).
MAX_FRAMES: Final = 1 << 20
MAX_WIDTH: Final = 64
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
MAX_CHANNEL: Final = 3  # channels are 2-bit codes; benchmark.records.Channel uses 0-2
_CHANNELS: Final = frozenset(range(MAX_CHANNEL + 1))
# The largest body a valid blob can inflate to: per frame two 64-bit values, a channel run and
# slack for exceptions. Bounds zlib so a corrupt blob can't inflate without limit.
_MAX_BODY: Final = MAX_FRAMES * 48 + 64
_PACKED: Final = 0
_RUNS: Final = 1
_GROUP: Final = 8  # values per packed group: 8 values of k bits are exactly k bytes


class Timeline(NamedTuple):
    frame_ns: list[int]
    frame_bytes: list[int]
    frame_channel: list[int]


# --- encoding ----------------------------------------------------------------------------


def encode(frame_ns: Sequence[int], frame_bytes: Sequence[int], frame_channel: Sequence[int]) -> bytes:
    """The three parallel frame lists as one blob; ``decode`` gives them back exactly."""
    n = len(frame_ns)
    if len(frame_bytes) != n or len(frame_channel) != n:
        raise ValueError(
            f"a timeline needs one size and one channel per frame: got {n} times, "
            f"{len(frame_bytes)} sizes and {len(frame_channel)} channels"
        )
    if n > MAX_FRAMES:
        raise ValueError(f"a timeline holds at most {MAX_FRAMES} frames, got {n}")
    for name, values in (("arrival", frame_ns), ("size", frame_bytes)):
        # SQLite's integer range: what the rest of the store can hold, and it bounds every field.
        if n and not (min(values) >= _INT64_MIN and max(values) <= _INT64_MAX):
            raise ValueError(f"a frame {name} is outside the 64-bit integer range")
    body = bytearray()
    _put_varint(body, n)
    if n:
        _put_varint(body, _zigzag(frame_ns[0]))
        _put_column(body, [frame_ns[i] - frame_ns[i - 1] for i in range(1, n)])
        _put_column(body, list(frame_bytes))
        _put_channels(body, frame_channel)
    crc = zlib.crc32(body).to_bytes(_CRC_BYTES, "little")
    # zlib only wins on long, regular streams (repeated sizes, simulator timing); keep it when it does.
    packed = zlib.compress(body, 6)
    if len(packed) < len(body):
        return bytes([FORMAT_VERSION | _ZLIB_FLAG]) + crc + packed
    return bytes([FORMAT_VERSION]) + crc + body


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _put_column(out: bytearray, values: list[int]) -> None:
    low = min(values, default=0)
    offsets = [v - low for v in values]
    width = _best_width(offsets)
    _put_varint(out, _zigzag(low))
    out.append(width)
    mask = (1 << width) - 1
    for start in range(0, len(offsets), _GROUP):
        group = offsets[start : start + _GROUP]
        acc = 0
        for j, value in enumerate(group):
            acc |= (value & mask) << (width * j)
        out += acc.to_bytes((len(group) * width + 7) // 8, "little")
    exceptions = [(i, v >> width) for i, v in enumerate(offsets) if v >> width]
    _put_varint(out, len(exceptions))
    previous = 0
    for index, high in exceptions:
        _put_varint(out, index - previous)
        _put_varint(out, high)
        previous = index


def _best_width(offsets: list[int]) -> int:
    """The bit width that makes the column smallest, counting the exceptions it leaves.

    An estimate (each exception costed at its worst index gap) is enough: any width decodes
    exactly, the choice only trades packed bits against exception bytes.
    """
    if not offsets:
        return 0
    ordered = sorted(offsets)
    top = min(ordered[-1].bit_length(), MAX_WIDTH)
    n = len(ordered)
    best, best_cost = top, None
    for width in range(top, -1, -1):
        outliers = n - bisect_left(ordered, 1 << width)
        cost = (n * width + 7) // 8
        if outliers:
            cost += outliers * (_varint_len(n) + _varint_len(ordered[-1] >> width))
        if best_cost is None or cost < best_cost:
            best, best_cost = width, cost
        if outliers * 2 > n:
            break  # fewer bits only adds exceptions from here on
    return best


def _put_channels(out: bytearray, channels: Sequence[int]) -> None:
    unknown = set(channels) - _CHANNELS
    if unknown:
        raise ValueError(f"a frame channel must be 0-{MAX_CHANNEL}, got {sorted(unknown, key=repr)}")
    runs = [(int(channel), sum(1 for _ in run)) for channel, run in groupby(channels)]
    run_cost = _varint_len(len(runs)) + sum(1 + _varint_len(length) for _, length in runs)
    if run_cost < (len(channels) + 3) // 4:
        out.append(_RUNS)
        _put_varint(out, len(runs))
        for channel, length in runs:
            out.append(channel)
            _put_varint(out, length)
        return
    out.append(_PACKED)
    for start in range(0, len(channels), 4):
        byte = 0
        for j, channel in enumerate(channels[start : start + 4]):
            byte |= int(channel) << (2 * j)
        out.append(byte)


# --- decoding ----------------------------------------------------------------------------


class _Reader:
    """Reads a body front to back; every shortfall is a ValueError naming what was cut off."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise ValueError(f"corrupt timeline: it ends before its {what}")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.data):
            raise ValueError(f"corrupt timeline: it ends inside its {what}")
        self.pos += count
        return self.data[self.pos - count : self.pos]

    def varint(self, what: str) -> int:
        value = shift = 0
        while True:
            byte = self.byte(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 16 * 7:  # no field needs more than ~100 bits
                raise ValueError(f"corrupt timeline: its {what} is an endless number")

    def signed(self, what: str) -> int:
        value = self.varint(what)
        return value >> 1 if not value & 1 else -((value + 1) >> 1)


def decode(blob: bytes) -> Timeline:
    """The frame lists ``encode`` packed; a ValueError saying what is wrong for anything else."""
    if len(blob) < 1 + _CRC_BYTES:
        raise ValueError(f"corrupt timeline: {len(blob)} bytes is too short to be one")
    header = blob[0]
    version = header & ~_ZLIB_FLAG
    if version != FORMAT_VERSION:
        raise ValueError(
            f"unknown timeline format {version} (this version reads format {FORMAT_VERSION}); "
            "the blob is corrupt or was written by a newer app"
        )
    body = blob[1 + _CRC_BYTES :]
    if header & _ZLIB_FLAG:
        body = _inflate(body)
    if zlib.crc32(body) != int.from_bytes(blob[1 : 1 + _CRC_BYTES], "little"):
        raise ValueError("corrupt timeline: its checksum does not match its content")
    reader = _Reader(body)
    n = reader.varint("frame count")
    if n > MAX_FRAMES:
        raise ValueError(f"corrupt timeline: it claims {n} frames (at most {MAX_FRAMES})")
    if not n:
        timeline = Timeline([], [], [])
    else:
        first = reader.signed("first arrival")
        frame_ns = [first]
        for gap in _read_column(reader, n - 1, "gaps"):
            frame_ns.append(frame_ns[-1] + gap)
        timeline = Timeline(frame_ns, _read_column(reader, n, "sizes"), _read_channels(reader, n))
    if reader.pos != len(body):
        raise ValueError(f"corrupt timeline: {len(body) - reader.pos} stray bytes after its frames")
    return timeline


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data, _MAX_BODY)
    except zlib.error as exc:
        raise ValueError(f"corrupt timeline: its compressed body does not inflate ({exc})") from exc
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise ValueError("corrupt timeline: its compressed body is cut off, oversized or trailed by junk")
    return body


def _read_column(reader: _Reader, count: int, what: str) -> list[int]:
    low = reader.signed(f"{what} base")
    width = reader.byte(f"{what} width")
    if width > MAX_WIDTH:
        raise ValueError(f"corrupt timeline: {what} packed {width} bits wide (at most {MAX_WIDTH})")
    packed = reader.take((count * width + 7) // 8, f"packed {what}")
    mask = (1 << width) - 1
    values: list[int] = []
    group_bytes = width  # a full group of 8 values
    for start in range(0, count, _GROUP):
        size = min(_GROUP, count - start)
        offset = (start // _GROUP) * group_bytes
        acc = int.from_bytes(packed[offset : offset + (size * width + 7) // 8], "little")
        for _ in range(size):
            values.append(acc & mask)
            acc >>= width
    exceptions = reader.varint(f"{what} exception count")
    if exceptions > count:
        raise ValueError(f"corrupt timeline: {exceptions} {what} exceptions for {count} values")
    index = 0
    for _ in range(exceptions):
        index += reader.varint(f"{what} exception index")
        if index >= count:
            raise ValueError(f"corrupt timeline: a {what} exception points past the end")
        values[index] |= reader.varint(f"{what} exception value") << width
    return [low + v for v in values]


def _read_channels(reader: _Reader, count: int) -> list[int]:
    mode = reader.byte("channel mode")
    if mode == _PACKED:
        packed = reader.take((count + 3) // 4, "channels")
        return [(packed[i // 4] >> (2 * (i % 4))) & 0b11 for i in range(count)]
    if mode != _RUNS:
        raise ValueError(f"corrupt timeline: unknown channel mode {mode}")
    channels: list[int] = []
    for _ in range(reader.varint("channel run count")):
        channel = reader.byte("run channel")
        length = reader.varint("run length")
        if channel > MAX_CHANNEL or len(channels) + length > count:
            raise ValueError("corrupt timeline: its channel runs don't fit its frames")
        channels.extend([channel] * length)
    if len(channels) != count:
        raise ValueError(f"corrupt timeline: channel runs cover {len(channels)} of {count} frames")
    return channels
