"""An LRU prefix cache over prompt blocks, like vLLM's automatic prefix caching. Pure: no I/O.

A prompt is cut into whole blocks of ``BLOCK_TOKENS`` tokens (a trailing partial
block is never cached). Each block is keyed by a hash of (its parent block's
key, its token ids), so a block only matches when everything before it matches
too. A prompt's cached tokens are its leading blocks already in the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

BLOCK_TOKENS = 16


def block_keys(token_ids: Sequence[int]) -> list[int]:
    """The chained keys of the whole blocks of ``token_ids``, first block first."""
    keys: list[int] = []
    parent = 0
    for start in range(0, len(token_ids) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        # hash() of a tuple of ints is not salted per process (only str/bytes are), so
        # keys are deterministic; a collision at 64 bits is not a practical concern.
        parent = hash((parent, tuple(token_ids[start : start + BLOCK_TOKENS])))
        keys.append(parent)
    return keys


class PrefixCache:
    """Cached blocks in least- to most-recently-used order, capacity counted in tokens."""

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_blocks = capacity_tokens // BLOCK_TOKENS  # 0: the cache is off
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, token_ids: Sequence[int]) -> int:
        """How many leading tokens of ``token_ids`` are cached; changes nothing."""
        hits = 0
        for key in block_keys(token_ids):
            if key not in self._blocks:
                break
            hits += 1
        return hits * BLOCK_TOKENS

    def admit(self, token_ids: Sequence[int]) -> int:
        """Count the cached leading tokens of a prompt, then cache all of its whole blocks.

        Returns the cached token count as it was before this prompt's blocks went in.
        """
        if self.capacity_blocks == 0:
            return 0
        cached = self.lookup(token_ids)
        # Touched last block first, so that a prompt's head ends up most recently used and
        # eviction takes tails before heads (vLLM frees blocks in reverse order for the same
        # reason): a block whose parent was evicted could never match again.
        for key in reversed(block_keys(token_ids)):
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
        return cached
