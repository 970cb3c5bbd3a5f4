"""Hand-made histories for tests: one op builder, a history of given ops, a setup create.

Times are given in milliseconds unless ``unit`` says how many ns one unit is (``unit=1``
for ns); ``worker`` is the op's id unless given, as each op of a hand-made history is
usually its own process.
"""

from __future__ import annotations

from typing import Any

from experiments.history import History, Op

__all__ = ["MS", "history", "op", "setup_create"]

MS = 1_000_000


def op(
    op_id: int,
    kind: str,
    t0: float,
    t1: float,
    result: str = "ok",
    user: str | None = None,
    *,
    coupon: str = "c",
    amount: int | None = None,
    value: dict[str, Any] | None = None,
    worker: int | None = None,
    phase: str | None = None,
    status: int | None = None,
    message: str | None = None,
    unit: int = MS,
) -> Op:
    """One op invoked at ``t0`` and completed at ``t1`` with ``result``."""
    return Op(
        op_id=op_id,
        worker=op_id if worker is None else worker,
        kind=kind,  # type: ignore[arg-type]
        coupon=coupon,
        user=user,
        amount=amount,
        invoke_ns=int(t0 * unit),
        complete_ns=int(t1 * unit),
        result=result,  # type: ignore[arg-type]
        http_status=status,
        message=message,
        value=value,
        phase=phase,
    )


def history(*ops: Op) -> History:
    """The ops as one history, on a time origin of 0."""
    return History(ops=list(ops), origin_ns=0)


def setup_create(coupon: str = "c", amount: int = 1, t1: float = 5) -> Op:
    """The lab's own create before a run (op and worker -1, phase ``setup``), 0 to ``t1`` ms."""
    return op(-1, "create", 0, t1, coupon=coupon, amount=amount, phase="setup")
