"""Actions, their order and the audit decisions have one home each, typed as Literals."""

from typing import get_args

from proxilion.analytics.event import DECISIONS, MODES, Decision, Mode
from proxilion.inspect.findings import ACTION_RANK, ACTIONS, Action
from proxilion.proxy import exchange


def test_the_actions_are_their_literal_type_weakest_first():
    assert ACTIONS == get_args(Action) == ("allow", "log", "alert", "redact", "block")
    assert sorted(ACTIONS, key=ACTION_RANK.__getitem__) == list(ACTIONS)


def test_the_proxy_orders_actions_by_the_one_rank():
    assert exchange.ACTION_ORDER is ACTION_RANK


def test_every_action_is_a_decision_and_the_tuples_match_their_types():
    assert DECISIONS[: len(ACTIONS)] == ACTIONS
    assert set(DECISIONS) == {value for part in get_args(Decision) for value in get_args(part)}
    assert MODES == get_args(Mode) == ("explicit", "connect", "transparent")
