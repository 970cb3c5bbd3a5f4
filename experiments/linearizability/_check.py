"""The linearizability check: a history's verdict, coupon by coupon, with a witness."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from experiments.history import History, Op
from experiments.linearizability._model import prepare
from experiments.linearizability._precheck import precheck
from experiments.linearizability._search import search
from experiments.linearizability._shrink import shrink_witness
from experiments.result import Verdict

__all__ = [
    "CHECK_NAME",
    "LINEARIZABLE_TIME_LIMIT_S",
    "MAX_CLOCK_UNCERTAINTY_MS",
    "check_linearizable",
    "started_ops",
]

CHECK_NAME = "linearizable"
#: The bound the scenario pipelines give the check: past it the verdict is unknown.
LINEARIZABLE_TIME_LIMIT_S = 10.0
#: The most clock uncertainty (ms) a process's ops are widened by; past it the verdict is
#: unknown, never a pass. Widening ops of two processes by +-u lets ops up to 2u apart
#: be put in either order: a round trip of seconds (a stalled sync, a clock step seen
#: by the estimates before and after) gave +-1-2 s and excused ops 800 ms apart.
#: Measured (2026-12-07, 2 Locust workers on loopback, 13 stampedes of 100 users, 8
#: round trips before and 8 after each): 0.16-0.40 ms, 60x below the bound, which
#: leaves room for a LAN's round trips of tens of ms and none for seconds.
MAX_CLOCK_UNCERTAINTY_MS = 25.0


@dataclass
class _Failure:
    coupon: str
    reason: str
    witness: list[int]
    stuck_op_id: int | None
    shrunk: bool
    context: list[int] = field(default_factory=list)


def _fail_detail(f: _Failure) -> str:
    ids = ", ".join(str(i) for i in f.witness)
    return f"coupon {f.coupon!r}: {f.reason}; ops [{ids}] cannot be put in one order"


def check_linearizable(
    history: History,
    time_limit_s: float = 10.0,
    *,
    initial: Mapping[str, int] | None = None,
    shrink: bool = True,
    clocks: Mapping[str, int | None] | None = None,
    max_clock_uncertainty_ms: float = MAX_CLOCK_UNCERTAINTY_MS,
) -> Verdict:
    """Whether ``history`` is linearizable against the sequential coupon service.

    ``initial`` maps coupons that existed before the history began (created outside
    it) to their stock; any other coupon starts absent. ``passed`` is None when the
    time limit ran out before an answer, never True. On failure, ``figures`` hold the
    coupon, ``witness_op_ids`` (a small set of ops that cannot be linearized together,
    whatever the others did), ``context_op_ids`` (ops kept beside them as optional:
    they may or may not have happened) and ``stuck_op_id`` (the op the search could
    not place).

    ``clocks`` maps a phase to the clock uncertainty (ns) of the process that timed
    the ops of that phase (Locust workers, on the master's clock by their offset):
    between processes each op's interval is widened by its process's uncertainty,
    and ops of one process keep their own order exactly (one clock). The widening
    used is in ``figures["clock_widening_ms"]`` and said in the detail. A process whose
    ops are in the history with an uncertainty past ``max_clock_uncertainty_ms``, or
    not measured (None), makes the verdict unknown with its figure: never widened past
    the bound. A negative uncertainty or bound is a ``ValueError``.
    """
    started = time.monotonic()
    deadline = started + time_limit_s
    widening: dict[str, int] = {}
    if clocks:
        widening, refused = _clock_widening(history, clocks, max_clock_uncertainty_ms)
        if refused is not None:
            return refused
    initial = dict(initial or {})
    users: dict[str, int] = {}
    by_coupon: dict[str, list[Op]] = {}
    for op in history.ops:
        by_coupon.setdefault(op.coupon, []).append(op)

    failures: list[_Failure] = []
    unknown: list[str] = []
    states = 0
    checked_ops = 0
    indeterminate = 0
    for coupon in sorted(by_coupon, key=lambda c: (len(by_coupon[c]), c)):
        ops = prepare(by_coupon[coupon], users, widening)
        checked_ops += len(ops)
        indeterminate += sum(1 for o in ops if not o.determinate)
        start_stock = initial.get(coupon)
        pre = precheck(ops, start_stock)
        if pre is not None:
            failures.append(_Failure(coupon, pre[0], sorted(pre[1]), None, True))
            continue
        if time.monotonic() > deadline:
            unknown.append(coupon)
            continue
        found = search(ops, start_stock, deadline)
        states += found.states
        if found.status is None:
            unknown.append(coupon)
        elif found.status is False:
            stuck_id = ops[found.stuck].op_id if 0 <= found.stuck < len(ops) else None
            failures.append(_Failure(coupon, "no order fits", [], stuck_id, False))
            failures[-1].witness = [o.op_id for o in ops]
            if shrink:
                # Best effort on a verdict already reached: a bounded share of the time.
                budget = min(2.0, max(0.5, 0.2 * time_limit_s))
                core, complete = shrink_witness(
                    ops, start_stock, found.stuck, time.monotonic() + budget
                )
                failures[-1].witness = sorted(o.op_id for o in core if o.determinate)
                failures[-1].context = sorted(o.op_id for o in core if not o.determinate)
                failures[-1].shrunk = complete
                if found.stuck >= 0:
                    reason = f"op {stuck_id} cannot be placed with the ops concurrent to it"
                    failures[-1].reason = reason

    elapsed = time.monotonic() - started
    figures: dict[str, object] = {
        "ops": len(history.ops),
        "ops_checked": checked_ops,
        "indeterminate_ops": indeterminate,
        "partitions": len(by_coupon),
        "states_explored": states,
        "elapsed_s": round(elapsed, 4),
        "time_limit_s": time_limit_s,
    }
    said = ""
    if clocks:
        figures["clock_widening_ms"] = _ms(widening)
        figures["max_clock_uncertainty_ms"] = max_clock_uncertainty_ms
        said = f"; {_widening_said(widening)}"
    if failures:
        worst = min(failures, key=lambda f: len(f.witness))
        figures.update(
            coupon=worst.coupon,
            witness_op_ids=worst.witness,
            context_op_ids=worst.context,
            stuck_op_id=worst.stuck_op_id,
            witness_minimal=worst.shrunk,
            failed_coupons=sorted(f.coupon for f in failures),
            unknown_coupons=sorted(unknown),
        )
        more = f" ({len(failures)} coupons fail)" if len(failures) > 1 else ""
        return Verdict(CHECK_NAME, False, _fail_detail(worst) + more + said, dict(figures))
    if unknown:
        figures["unknown_coupons"] = sorted(unknown)
        detail = (
            f"out of time after {elapsed:.2f}s: {len(unknown)} of {len(by_coupon)} coupons "
            f"not decided{said}"
        )
        return Verdict(CHECK_NAME, None, detail, dict(figures))
    detail = f"{checked_ops} ops on {len(by_coupon)} coupons fit one real-time order{said}"
    return Verdict(CHECK_NAME, True, detail, dict(figures))


def _ms(by_phase: Mapping[str, int | None]) -> dict[str, float | None]:
    return {p: None if u is None else round(u / 1e6, 3) for p, u in sorted(by_phase.items())}


def _widening_said(widening: Mapping[str, int]) -> str:
    if not widening:
        return "no process clock to widen by"
    each = ", ".join(f"{p} +-{u / 1e6:.3f} ms" for p, u in sorted(widening.items()))
    return f"widened between processes by {each}; each process's own order kept"


def _clock_widening(
    history: History, clocks: Mapping[str, int | None], bound_ms: float
) -> tuple[dict[str, int], Verdict | None]:
    """The widening per phase of the history's ops, or the unknown verdict past the bound.

    A clock that timed none of the history's ops widens nothing and is not judged.
    """
    if not bound_ms >= 0:
        raise ValueError(f"max_clock_uncertainty_ms must be >= 0, not {bound_ms!r}")
    bad = {p: u for p, u in clocks.items() if u is not None and u < 0}
    if bad:
        raise ValueError(f"a clock uncertainty is never negative: {_ms(bad)} ms")
    timed = {o.phase or "" for o in history.ops}
    used = {p: u for p, u in clocks.items() if p in timed}
    bound_ns = bound_ms * 1e6
    past = {p: u for p, u in used.items() if u is None or u > bound_ns}
    if not past:
        return {p: u for p, u in used.items() if u is not None}, None
    each = ", ".join(
        f"{p} not measured" if u is None else f"{p} +-{u / 1e6:.3f} ms"
        for p, u in sorted(past.items())
    )
    detail = (
        f"not checked: clock uncertainty past the bound of +-{bound_ms:g} ms ({each}); "
        "a widening that wide would let ops up to twice that far apart be put in either order"
    )
    figures: dict[str, object] = {
        "ops": len(history.ops),
        "clock_widening_ms": _ms(used),
        "max_clock_uncertainty_ms": bound_ms,
        "clocks_past_bound": sorted(past),
    }
    return {}, Verdict(CHECK_NAME, None, detail, figures)


def started_ops(history: History) -> History:
    """``history`` without the ops the runner never started (its time bound passed).

    Such an op is recorded ``unknown``; it did not happen, and leaving it in as
    "may have happened" would let it explain away an effect it never had.
    """
    from experiments.runner import NOT_STARTED

    return History(
        ops=[o for o in history.ops if o.message != NOT_STARTED], origin_ns=history.origin_ns
    )
