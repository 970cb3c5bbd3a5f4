"""One look-up for every named choice (strategies, campaign strategies, isolation levels)."""

from __future__ import annotations

import pytest

from coupon_core.campaigns import check_level, get_campaign_strategy
from coupon_core.strategies import available_strategies, get_strategy
from coupon_core.validation import choose


def test_a_name_not_in_the_table_is_a_value_error_naming_the_choices() -> None:
    assert choose({"a": 1, "b": 2}, "letter", "b") == 2
    with pytest.raises(ValueError, match=r"^unknown letter 'z'; choose one of a, b$"):
        choose({"a": 1, "b": 2}, "letter", "z")
    # The offered choices may be fewer than the table (the lab's registered mutants).
    with pytest.raises(ValueError, match=r"choose one of a$"):
        choose({"a": 1, "b": 2}, "letter", "z", ["a"])
    # An unhashable name is bad input like any other, not a TypeError.
    with pytest.raises(ValueError, match=r"unknown letter \['a'\]"):
        choose({"a": 1}, "letter", ["a"])  # type: ignore[arg-type]


def test_every_lookup_goes_through_it() -> None:
    with pytest.raises(
        ValueError,
        match=f"^unknown strategy 'x'; choose one of {', '.join(available_strategies())}$",
    ):
        get_strategy("x")
    with pytest.raises(ValueError, match=r"^unknown isolation 'x'; choose one of "):
        check_level("x")
    with pytest.raises(ValueError, match=r"^unknown campaign strategy 'x'; choose one of "):
        get_campaign_strategy("x")
