"""Uses of a model are counted: it stays busy until the last one ends, which is when it was last used."""

from __future__ import annotations

import pytest

from lifecycle.activity import Activity


def test_uses_are_counted_and_the_last_end_is_remembered() -> None:
    now = [100.0]
    activity = Activity(clock=lambda: now[0])
    assert (activity.busy("m"), activity.last_used("m")) == (False, None)
    with activity.using("m"):
        activity.begin("m")  # a second use beside the first (a chat and a benchmark)
        assert activity.busy("m")
        now[0] = 105.0
    assert activity.busy("m")  # the second still runs
    assert activity.last_used("m") == 105.0
    now[0] = 110.0
    activity.end("m")
    assert (activity.busy("m"), activity.last_used("m")) == (False, 110.0)
    assert not activity.busy("other")


def test_a_use_that_fails_still_ends() -> None:
    activity = Activity(clock=lambda: 7.0)
    with pytest.raises(RuntimeError), activity.using("m"):
        raise RuntimeError("the stream broke")
    assert (activity.busy("m"), activity.last_used("m")) == (False, 7.0)
