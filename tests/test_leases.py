"""The sharing rule alone (no database): who may take a free lease, who gives one back."""

from __future__ import annotations

from readmodels.leases import GRACE, SHED_AFTER, LeaseShare, owner_of, session_name


def test_alone_a_runner_takes_every_lease() -> None:
    share = LeaseShare("a:1", 3)
    assert not share.may_take(0, 0)  # before the first round: nothing
    assert not share.refresh({}, 0)
    assert share.share == 3
    assert [share.may_take(held, 0) for held in range(4)] == [True, True, True, False]


def test_the_least_loaded_take_first_and_nobody_above_the_share() -> None:
    share = LeaseShare("a:1", 3)
    share.refresh({"b:2": 0, "c:3": 2}, 1)  # a holds 1, b none, c two
    assert share.share == 1
    assert not share.may_take(1, 0)  # at its share
    two = LeaseShare("a:1", 3)
    two.refresh({"b:2": 0}, 1)  # share 2: a may hold two, but b holds fewer
    assert not two.may_take(1, 0)
    assert two.may_take(1, GRACE)  # unless the lease stays free that long
    assert not two.may_take(2, GRACE)


def test_a_runner_holding_too_many_gives_one_back_after_a_while() -> None:
    share = LeaseShare("a:1", 3)
    rounds = [share.refresh({"b:2": 0, "c:3": 0}, 3) for _ in range(SHED_AFTER)]
    assert rounds == [False] * (SHED_AFTER - 1) + [True]
    assert not share.refresh({"b:2": 1, "c:3": 1}, 1)  # fair: keeps its one
    two = LeaseShare("a:1", 3)
    assert [two.refresh({"b:2": 1}, 2) for _ in range(SHED_AFTER + 1)] == [False] * (SHED_AFTER + 1)  # 2 and 1: fair


def test_sessions_name_their_process() -> None:
    assert owner_of(session_name("projections", "host:42")) == "host:42"
    assert owner_of(session_name("relay", "host:42")) == "host:42"
    assert owner_of("psql") is None and owner_of(None) is None and owner_of("") is None
