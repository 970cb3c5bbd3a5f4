"""How a check is made: named, its crash an unknown verdict, an impossible history a failure."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

from experiments.checks.state import FinalState
from experiments.history import History, Op
from experiments.result import Verdict

__all__ = ["ImpossibleHistory", "check", "ops_on", "verdict_of"]

P = ParamSpec("P")


class ImpossibleHistory(ValueError):
    """A history the contract cannot produce (two successful creates of one name): the
    check that meets it fails with this as its reason, it does not crash into unknown."""


def check(name: str) -> Callable[[Callable[P, Verdict]], Callable[P, Verdict]]:
    """Name a check and make its crash an unknown verdict, never a pass."""

    def wrap(fn: Callable[P, Verdict]) -> Callable[P, Verdict]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> Verdict:
            for arg in (*args, *kwargs.values()):
                if isinstance(arg, FinalState) and arg.unavailable is not None:
                    return Verdict.skip(name, arg.unavailable)
            try:
                verdict = fn(*args, **kwargs)
            except ImpossibleHistory as err:
                return Verdict(name, False, f"impossible history: {err}")
            except Exception as err:
                return Verdict(name, None, f"check crashed: {type(err).__name__}: {err}")
            if verdict.passed not in (True, False, None):
                return Verdict(name, None, f"check returned {verdict.passed!r}, not a verdict")
            return verdict

        return run

    return wrap


def verdict_of(name: str, bad: list[str], ok_detail: str, figures: dict[str, Any]) -> Verdict:
    """Failed, naming the first five of ``bad`` (and how many more), or passed."""
    if bad:
        shown = "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        return Verdict(name, False, shown, figures)
    return Verdict(name, True, ok_detail, figures)


def ops_on(history: History, coupons: Iterable[str] | None = None) -> list[Op]:
    """The history's ops on ``coupons`` (None: every op)."""
    names = None if coupons is None else set(coupons)
    return [o for o in history if names is None or o.coupon in names]
