"""How long a log follower gathers between batches: short when quiet, longer under load."""

from __future__ import annotations

from eventstore.waiting import Gathering


def test_the_pause_doubles_while_busy_up_to_the_most_and_drops_back_when_quiet() -> None:
    gathering = Gathering(0.01, 0.04)
    assert [gathering.after_batch(busy=True) for _ in range(4)] == [0.02, 0.04, 0.04, 0.04]
    assert gathering.after_batch(busy=False) == 0.01  # one quiet batch: the next event is not kept waiting
    assert gathering.after_batch(busy=True) == 0.02


def test_a_most_below_the_least_never_shortens_the_pause() -> None:
    gathering = Gathering(0.01, 0.0)
    assert gathering.after_batch(busy=True) == gathering.after_batch(busy=False) == 0.01
