"""The simulator's serving model, pure: batch slots, queueing, slowdowns, reply length, prefix cache.

Every expected figure is worked out by hand in the comments beside it; times are plain
numbers standing in for ``time.monotonic()`` readings.
"""

from __future__ import annotations

from typing import Any

import pytest

from simulator.prefix_cache import BLOCK_TOKENS, PrefixCache, block_keys
from simulator.serving import Scheduler, ServingParams, reply_length
from simulator.tokens import count_prompt_tokens, prompt_token_ids, token_id, token_ids


def scheduler(ttft_s: float = 0.0, tokens_per_s: float = 10.0, **params: Any) -> Scheduler:
    """10 tokens/s (a 0.1 s interval) and no base TTFT unless a test says otherwise."""
    return Scheduler(ServingParams(ttft_s, tokens_per_s, **params))


# --- one request -------------------------------------------------------------------------------


def test_defaults_keep_the_plain_schedule() -> None:
    # arrival + ttft + i / rate, nothing else: the simulator's behaviour before the model existed.
    plan = scheduler(ttft_s=0.1, tokens_per_s=50.0).plan(10.0, prompt_tokens=500, cached_tokens=0, n_tokens=4)
    assert (plan.admitted, plan.queued_s, plan.prefill_s, plan.batch_n) == (10.0, 0.0, 0.0, 1)
    assert plan.first_due == pytest.approx(10.1)
    assert plan.interval_s == pytest.approx(0.02)
    assert plan.due(3) == pytest.approx(10.16)
    assert plan.last_due == pytest.approx(10.16)


def test_prefill_costs_only_the_uncached_tokens() -> None:
    # 500 prompt tokens, 100 cached, 1000 tokens/s: 0.4 s of prefill after the 0.1 s base.
    s = scheduler(ttft_s=0.1, prefill_tokens_per_s=1000.0)
    plan = s.plan(0.0, prompt_tokens=500, cached_tokens=100, n_tokens=1)
    assert plan.prefill_s == pytest.approx(0.4)
    assert plan.first_due == pytest.approx(0.5)
    assert plan.last_due == plan.first_due  # one token: the first is the last


def test_decode_slows_with_context_depth() -> None:
    # K = 0.5 per 1k tokens, a 2000-token prompt (cached or not): 1 + 0.5 * 2 = 2x the
    # 10 ms interval of 100 tokens/s.
    s = scheduler(tokens_per_s=100.0, decode_slowdown_per_1k=0.5)
    assert s.plan(0.0, prompt_tokens=2000, cached_tokens=2000, n_tokens=5).interval_s == pytest.approx(0.02)
    # Depth is fixed per request: a short prompt next to it decodes at full speed.
    assert s.plan(0.0, prompt_tokens=0, cached_tokens=0, n_tokens=5).interval_s == pytest.approx(0.01)


# --- batches -----------------------------------------------------------------------------------


def test_batch_slowdown_counts_the_sequences_running_at_admission() -> None:
    # 10 tokens/s (0.1 s), S = 0.5, 11 tokens each (10 intervals), no limit on the batch.
    s = scheduler(batch_slowdown=0.5)
    first, second, third = (s.plan(0.0, 0, 0, 11) for _ in range(3))
    # n = 1, 2, 3: intervals 0.1, 0.1 * 1.5, 0.1 * 2.0; ends 1.0, 1.5, 2.0.
    assert [p.batch_n for p in (first, second, third)] == [1, 2, 3]
    assert [p.interval_s for p in (first, second, third)] == pytest.approx([0.1, 0.15, 0.2])
    assert [p.last_due for p in (first, second, third)] == pytest.approx([1.0, 1.5, 2.0])
    # At 1.0 the first has just ended: the second and third are running, so n = 3.
    assert s.plan(1.0, 0, 0, 11).batch_n == 3
    # At 5.0 everything has ended.
    assert s.plan(5.0, 0, 0, 11).batch_n == 1


def test_aggregate_rate_saturates() -> None:
    # n * r / (1 + S (n - 1)) with r = 10, S = 0.5: 10, 13.3, 15, 16 ... towards r / S = 20.
    s = scheduler(batch_slowdown=0.5)
    plans = [s.plan(0.0, 0, 0, 100) for _ in range(8)]
    aggregate = sum(1 / p.interval_s for p in plans[:4])
    assert aggregate == pytest.approx(10 + 10 / 1.5 + 10 / 2.0 + 10 / 2.5)
    assert 1 / plans[-1].interval_s == pytest.approx(10 / 4.5)  # the 8th joins a batch of 8


def test_max_batch_queues_in_arrival_order_and_admits_when_a_slot_frees() -> None:
    # B = 2, 11 tokens at 10 tokens/s: each sequence holds its slot for 1.0 s.
    s = scheduler(max_batch=2)
    a, b = s.plan(0.0, 0, 0, 11), s.plan(0.0, 0, 0, 11)
    assert (a.queued_s, b.queued_s, a.batch_n, b.batch_n) == (0.0, 0.0, 1, 2)
    # Third at 0.1: both slots busy until 1.0; admitted then, alone (both others ended at 1.0).
    c = s.plan(0.1, 0, 0, 11)
    assert (c.admitted, c.batch_n) == (1.0, 1)
    assert c.queued_s == pytest.approx(0.9)
    assert c.first_due == 1.0
    assert c.last_due == pytest.approx(2.0)
    # Fourth at 0.2: the second slot frees at 1.0 too; it starts beside the third (n = 2).
    d = s.plan(0.2, 0, 0, 11)
    assert (d.admitted, d.batch_n) == (1.0, 2)
    # Fifth at 0.3: the next free slot is the third's, at 2.0.
    e = s.plan(0.3, 0, 0, 11)
    assert e.admitted == pytest.approx(2.0)
    assert e.queued_s == pytest.approx(1.7)


def test_past_the_knee_throughput_is_flat() -> None:
    # B = 4, S = 0.5, 16 requests at once, 11 tokens each. Four run at a time, so the batch
    # never exceeds 4 and each wave of four takes as long as the slowest of them.
    s = scheduler(max_batch=4, batch_slowdown=0.5)
    plans = [s.plan(0.0, 0, 0, 11) for _ in range(16)]
    assert max(p.batch_n for p in plans) == 4
    # First wave: n = 1..4, intervals 0.1 x (1, 1.5, 2, 2.5), ends 1.0, 1.5, 2.0, 2.5.
    assert [p.last_due for p in plans[:4]] == pytest.approx([1.0, 1.5, 2.0, 2.5])
    # The fifth takes the first slot to free (1.0), where three are still running: n = 4.
    assert (plans[4].admitted, plans[4].batch_n) == (pytest.approx(1.0), 4)
    # Admissions never go backwards: first come, first served.
    admitted = [p.admitted for p in plans]
    assert admitted == sorted(admitted)
    assert all(p.queued_s > 0 for p in plans[4:])


def test_ttft_and_prefill_hold_the_slot() -> None:
    # B = 1, 0.2 s base TTFT, 100 prompt tokens at 1000/s: the first holds the slot from 0 to
    # 0.2 + 0.1 + 2 intervals of 0.1 = 0.5; the second is admitted then.
    s = scheduler(max_batch=1, ttft_s=0.2, prefill_tokens_per_s=1000.0)
    first = s.plan(0.0, 100, 0, 3)
    second = s.plan(0.0, 100, 0, 3)
    assert first.last_due == pytest.approx(0.5)
    assert second.admitted == pytest.approx(0.5)
    assert second.first_due == pytest.approx(0.8)


def test_arrivals_handed_in_out_of_order_wait_for_the_earlier_one() -> None:
    s = scheduler()
    s.plan(1.0, 0, 0, 1)
    late = s.plan(0.999, 0, 0, 1)  # its body was read after the other's
    assert late.admitted == 1.0
    assert late.queued_s == pytest.approx(0.001)


# --- reply length ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_tokens", "natural", "min_tokens", "ignore_eos", "expected"),
    [
        (64, 0, 0, False, (64, "length")),  # no natural length: always max_tokens
        (64, 20, 0, False, (20, "stop")),  # the model stops on its own
        (64, 20, 0, True, (64, "length")),  # ignore_eos runs to the end
        (64, 20, 64, False, (64, "length")),  # min_tokens >= max_tokens: the same
        (64, 20, 30, False, (30, "stop")),  # EOS held back until min_tokens
        (10, 20, 0, False, (10, "length")),  # max_tokens comes first
        (20, 20, 0, False, (20, "stop")),  # EOS exactly at the limit is still a stop
    ],
)
def test_reply_length(
    max_tokens: int, natural: int, min_tokens: int, ignore_eos: bool, expected: tuple[int, str]
) -> None:
    assert reply_length(max_tokens, natural, min_tokens, ignore_eos) == expected


# --- tokenizer ---------------------------------------------------------------------------------


def test_tokenizer_counts_words_across_messages() -> None:
    messages = [
        {"role": "system", "content": "be  brief"},
        {"role": "user", "content": [{"type": "text", "text": "three word\nprompt"}]},
    ]
    assert count_prompt_tokens(messages) == 5
    assert prompt_token_ids(messages) == token_ids("be brief three word prompt")
    assert token_id("word") == token_id("word") != token_id("words")
    assert all(0 <= i < 32000 for i in token_ids("be brief three word prompt"))


# --- prefix cache ------------------------------------------------------------------------------


def prompt(tag: str, n_tokens: int) -> list[int]:
    """``n_tokens`` distinct token ids, different for every ``tag``."""
    return token_ids(" ".join(f"{tag}{i}" for i in range(n_tokens)))


def test_cache_counts_leading_whole_blocks() -> None:
    cache = PrefixCache(capacity_tokens=1024)
    p = prompt("a", 40)  # 2 whole blocks (32 tokens) and 8 left over
    assert len(block_keys(p)) == 2
    assert cache.admit(p) == 0  # cold
    assert cache.admit(p) == 32  # the partial block is never cached
    # Same first block, different second: only the first matches (keys chain to their parents).
    other = p[:16] + prompt("b", 24)
    assert cache.admit(other) == 16
    # A different first block spoils every later one, even if they are equal.
    assert cache.admit(prompt("c", 16) + p[16:]) == 0


def test_cache_capacity_in_tokens_evicts_least_recently_used_tails_first() -> None:
    cache = PrefixCache(capacity_tokens=4 * BLOCK_TOKENS)  # 4 blocks
    a, b = prompt("a", 48), prompt("b", 32)  # 3 blocks, 2 blocks
    cache.admit(a)
    cache.admit(b)  # 5 blocks: one must go, a's tail (a's head stays more recent than its tail)
    assert len(cache) == 4
    assert cache.lookup(a) == 32
    assert cache.lookup(b) == 32
    # Using a again makes it the most recent; b's tail then goes first, then b's head.
    cache.admit(a[:32])
    cache.admit(prompt("c", 32))  # 2 more blocks: b's two are the least recently used
    assert cache.lookup(b) == 0
    assert cache.lookup(a) == 32


def test_cache_off_and_lookup_changes_nothing() -> None:
    off = PrefixCache(capacity_tokens=0)
    p = prompt("a", 32)
    assert off.admit(p) == off.admit(p) == 0
    cache = PrefixCache(capacity_tokens=1024)
    assert cache.lookup(p) == 0
    assert cache.admit(p) == 0  # lookup inserted nothing
    assert len(cache) == 2
