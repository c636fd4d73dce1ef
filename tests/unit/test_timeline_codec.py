"""The frame timeline codec: exact round trips, refusal of corrupt blobs, and its size per frame."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib

import pytest

from benchmark.records import Channel
from benchmark.timeline_codec import FORMAT_VERSION, MAX_FRAMES, Timeline, decode, encode
from tests.support import REPO_ROOT

Frames = tuple[list[int], list[int], list[int]]


def realistic_stream(rng: random.Random, frames: int = 256, *, steady: bool = False) -> Frames:
    """A reasoning model's stream as the runner records it: a role-only first frame after the
    prefill, reasoning, then the answer, then finish and usage frames; ~100-byte frames.

    Default gaps are uniform over 10-30 ms in whole nanoseconds, the hardest case (every gap is
    fresh noise); ``steady`` is a decode loop at 20 ms with 2 ms jitter, as a real server gives.
    """
    at = rng.randint(50_000_000, 400_000_000)  # TTFR: prefill
    frame_ns, frame_bytes, frame_channel = [], [], []
    for i in range(frames):
        if i:
            at += max(0, round(rng.gauss(20e6, 2e6))) if steady else rng.randint(10_000_000, 30_000_000)
        frame_ns.append(at)
        if i == 0 or i >= frames - 2:
            channel = Channel.NONE
        else:
            channel = Channel.REASONING if i < frames // 4 else Channel.CONTENT
        frame_channel.append(channel)
        # The SSE envelope is fixed; the token text varies by a few bytes (steady) or more.
        frame_bytes.append(96 + rng.randint(1, 8) if steady else rng.randint(90, 130))
    return frame_ns, frame_bytes, frame_channel


def random_frames(rng: random.Random) -> Frames:
    """Anything the codec must carry exactly: empty, tiny, bunched, stalled, out of order,
    negative, huge, all of one channel or alternating."""
    n = rng.choice([0, 1, 2, 3, 7, 8, 9, 31, rng.randint(0, 600)])
    style = rng.choice(["arrivals", "bunched", "stalls", "chaos", "constant", "extremes"])
    frame_ns: list[int] = []
    at = rng.randint(-(10**9), 10**10)
    for _ in range(n):
        if style == "arrivals":
            at += rng.randint(0, 40_000_000)
        elif style == "bunched":
            at += rng.choice([0, 0, 3, rng.randint(1, 10**7)])
        elif style == "stalls":
            at += rng.randint(10**6, 3 * 10**7) if rng.random() > 0.05 else rng.randint(10**9, 10**11)
        elif style == "chaos":
            at = rng.randint(-(10**15), 10**15)
        elif style == "extremes":
            at = rng.choice([-(2**63), 2**63 - 1, 0, -1, 1])
        frame_ns.append(at)
    if style == "extremes":
        frame_bytes = [rng.choice([0, 2**63 - 1, -(2**63), 1]) for _ in range(n)]
    else:
        frame_bytes = [rng.choice([rng.randint(0, 300), rng.randint(0, 10**6)]) for _ in range(n)]
    if rng.random() < 0.5:
        frame_channel = [rng.randint(0, 3) for _ in range(n)]
    else:
        frame_channel = sorted(rng.choice([0, 1, 2]) for _ in range(n))  # runs
    return frame_ns, frame_bytes, frame_channel


def test_random_timelines_round_trip_exactly() -> None:
    rng = random.Random(20261201)
    for _ in range(1500):
        frames = random_frames(rng)
        assert decode(encode(*frames)) == frames


def test_decode_gives_named_plain_lists() -> None:
    blob = encode([5, 9], [100, 101], [Channel.NONE, Channel.CONTENT])
    timeline = decode(blob)
    assert isinstance(timeline, Timeline)
    assert timeline.frame_ns == [5, 9]
    assert timeline.frame_bytes == [100, 101]
    assert timeline.frame_channel == [0, 1]
    assert type(timeline.frame_channel[1]) is int
    assert blob[0] == FORMAT_VERSION  # the format is the first byte, for readers to come


def test_an_empty_timeline_is_a_few_bytes() -> None:
    blob = encode([], [], [])
    assert decode(blob) == ([], [], [])
    assert len(blob) <= 6


def test_long_regular_streams_round_trip_through_zlib() -> None:
    # A simulator's stream: the same gap and size every time packs to nothing on its own.
    constant = ([i * 25_000_000 for i in range(5000)], [120] * 5000, [1] * 4999 + [0])
    blob = encode(*constant)
    assert decode(blob) == constant
    assert len(blob) < 40
    # Repeating patterns are where zlib wins, and the header says it was used.
    rng = random.Random(3)
    patterned = (
        [i * 1000 + rng.choice([0, 7]) for i in range(5000)],
        [rng.choice([100, 200]) for _ in range(5000)],
        [rng.choice([1, 2]) for _ in range(5000)],
    )
    blob = encode(*patterned)
    assert blob[0] == FORMAT_VERSION | 0x80
    assert decode(blob) == patterned


@pytest.mark.parametrize(
    ("steady", "bound"),
    [(False, 4.0), (True, 3.6)],
    ids=["uniform-10-30ms", "steady-20ms"],
)
def test_a_realistic_stream_costs_under_four_bytes_a_frame(steady: bool, bound: float) -> None:
    rng = random.Random(7)
    sizes = []
    for _ in range(20):
        frames = realistic_stream(rng, steady=steady)
        blob = encode(*frames)
        assert decode(blob) == frames
        sizes.append(len(blob) / len(frames[0]))
    per_frame = sum(sizes) / len(sizes)
    # Measured: 3.99 (uniform gaps: ~25 bits of ns noise each) and 3.48 (steady decoding).
    assert per_frame < bound, f"{per_frame:.3f} bytes per frame"
    # Three JSON lists would cost ~9x as much: that is what the codec is for.
    assert per_frame * 8 < len(str(list(frames)).replace(" ", "")) / len(frames[0])


def test_encode_refuses_what_it_cannot_round_trip() -> None:
    with pytest.raises(ValueError, match="one size and one channel per frame"):
        encode([1, 2], [3], [0, 0])
    with pytest.raises(ValueError, match="channel must be 0-3"):
        encode([1], [3], [4])
    with pytest.raises(ValueError, match="64-bit"):
        encode([2**63], [1], [0])
    with pytest.raises(ValueError, match="at most"):
        encode([0] * (MAX_FRAMES + 1), [0] * (MAX_FRAMES + 1), [0] * (MAX_FRAMES + 1))


def test_every_corruption_is_a_value_error_never_wrong_frames() -> None:
    rng = random.Random(11)
    frames = realistic_stream(rng, 64)
    blob = encode(*frames)
    for _ in range(2000):
        damaged = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        if bytes(damaged) == blob:
            continue
        with pytest.raises(ValueError, match="timeline"):
            decode(bytes(damaged))
    for cut in range(len(blob)):
        with pytest.raises(ValueError, match="timeline"):
            decode(blob[:cut])
    with pytest.raises(ValueError, match=r"stray bytes|checksum"):
        decode(blob + b"\x00")


def test_well_checksummed_nonsense_is_still_refused_clearly() -> None:
    def forged(body: bytes, header: int = FORMAT_VERSION) -> bytes:
        return bytes([header]) + zlib.crc32(body).to_bytes(4, "little") + body

    cases = {
        "unknown timeline format 9": bytes([9]) + b"\x00" * 8,
        "claims": forged(b"\xff\xff\xff\x7f"),  # 268M frames
        "endless number": forged(b"\x01" + b"\xff" * 40),
        "bits wide": forged(b"\x02\x00\x00\x41"),  # gaps 65 bits wide
        "channel mode": forged(b"\x01\x00\x00\x00\x00\x00\x00\x00\x07"),
        "runs": forged(b"\x02\x00\x00\x00\x00\x00\x00\x00\x01\x01\x01\x05"),  # 5 frames of 2
        "does not inflate": forged(b"not zlib", FORMAT_VERSION | 0x80),
        "too short": b"\x01\x00",
    }
    for message, blob in cases.items():
        with pytest.raises(ValueError, match=message):
            decode(blob)


def test_the_codec_imports_nothing_heavy() -> None:
    # The db package stores these blobs; it must not drag numpy in through the codec.
    code = "import sys, benchmark.timeline_codec; print('numpy' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "False", done.stderr
