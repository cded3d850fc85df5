"""The lazy per-connection deadline, on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from proxilion.proxy.deadline import Deadline


def _deadline() -> tuple[Clock, Deadline, list[float]]:
    clock = Clock()
    fired: list[float] = []
    return clock, Deadline(clock, lambda: fired.append(clock.seconds())), fired


def test_expires_at_the_time_set() -> None:
    clock, deadline, fired = _deadline()
    deadline.set(5)
    clock.advance(4.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == [5]
    assert not deadline.pending


def test_moving_it_later_waits_for_the_new_time_with_one_pending_call() -> None:
    clock, deadline, fired = _deadline()
    deadline.set(5)
    for _ in range(100):
        clock.advance(1)
        deadline.set(5)
    assert len(clock.getDelayedCalls()) == 1
    assert fired == []
    clock.advance(5)
    assert fired == [105]


def test_moving_it_sooner_fires_sooner() -> None:
    clock, deadline, fired = _deadline()
    deadline.set(60)
    deadline.set(2)
    clock.advance(2)
    assert fired == [2]


def test_cleared_deadline_never_fires_and_can_be_set_again() -> None:
    clock, deadline, fired = _deadline()
    deadline.set(5)
    deadline.clear()
    clock.advance(10)
    assert fired == []
    deadline.set(3)
    clock.advance(3)
    assert fired == [13]


def test_stopped_deadline_leaves_no_call_behind() -> None:
    clock, deadline, fired = _deadline()
    deadline.set(5)
    deadline.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert fired == []
