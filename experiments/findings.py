"""Findings: an anomaly a known-unsafe configuration must show, excusing only what it explains.

A finding names its evidence: the operations that show the anomaly (the acknowledged
claims a failover lost, the reads a lagging standby served stale). It may excuse a
failed check only when that check, run again with the evidence taken out, passes:
the evidence then explains the failure, and the failure moves to the Result's
``summary["findings"]`` with the re-check beside it. Every other failure stands, and
so does every unknown verdict (an unknown is never excused: nothing shows what it
would have said). The check that states the evidence itself (``evidence_check``)
moves when it failed with evidence in hand.

    scope(verdicts, evidence_check=..., evidence=ops, rechecks={name: fn})
        -> (verdicts that stand, findings)

``without(history, ops, how)`` gives the history with the evidence taken out:
``"unknown"`` keeps the ops but makes their outcome unknown (an acknowledgement the
configuration could not honour: it may or may not have happened), ``"drop"`` removes
them (a read whose answer came from elsewhere), ``"erase"`` removes claims and every
trace of them in the reads (a lost claim that reads on the old primary had seen: the
user taken out of ``claimed_by`` and the stock given back, as if it never happened).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Literal

from experiments.history import History, Op
from experiments.result import Verdict

__all__ = ["scope", "without"]


def _unseen(op: Op, users: set[str]) -> Op:
    """``op`` as if the claims of ``users`` on its coupon never happened (a read's value)."""
    value = op.value
    if op.kind != "get" or not users or not value or not isinstance(value.get("claimed_by"), list):
        return op
    seen = [u for u in value["claimed_by"] if u not in users]
    back = len(value["claimed_by"]) - len(seen)
    if not back:
        return op
    remaining = value.get("remaining_amount")
    return dataclasses.replace(
        op,
        value={
            **value,
            "claimed_by": seen,
            "remaining_amount": remaining + back if isinstance(remaining, int) else remaining,
        },
    )


def without(
    history: History, ops: Iterable[Op], how: Literal["unknown", "drop", "erase"]
) -> History:
    """A copy of ``history`` with ``ops`` taken out as ``how`` says (see the module)."""
    ops = list(ops)
    ids = {o.op_id for o in ops}
    if how == "erase":
        gone: dict[str, set[str]] = {}
        for o in ops:
            if o.kind == "claim" and o.user is not None:
                gone.setdefault(o.coupon, set()).add(o.user)
        kept = [_unseen(o, gone.get(o.coupon, set())) for o in history.ops if o.op_id not in ids]
    elif how == "drop":
        kept = [o for o in history.ops if o.op_id not in ids]
    else:
        kept = [
            dataclasses.replace(o, result="unknown") if o.op_id in ids else o for o in history.ops
        ]
    return History(ops=kept, origin_ns=history.origin_ns)


def scope(
    verdicts: list[Verdict],
    *,
    finding: str,
    evidence_check: str,
    evidence: Collection[Op],
    rechecks: Mapping[str, Callable[[], Verdict]],
) -> tuple[list[Verdict], dict[str, Any]]:
    """The verdicts, each failure the finding explains marked with it (``Verdict.finding``,
    its evidence and its re-check in the figures), and the findings by check name."""
    findings: dict[str, Any] = {}
    out: list[Verdict] = []
    ids = sorted(o.op_id for o in evidence)
    for v in verdicts:
        if (
            v.passed is not False
            or not evidence
            or (v.name != evidence_check and v.name not in rechecks)
        ):
            out.append(v)  # a pass, an unknown, a skip, a check the finding does not name
            continue
        again = None if v.name == evidence_check else rechecks[v.name]()
        if again is not None and again.passed is not True:
            out.append(
                dataclasses.replace(
                    v,
                    detail=f"{v.detail} (not explained by the finding: with its "
                    f"{len(ids)} evidence ops taken out, still {again.label}:"
                    f" {again.detail})",
                )
            )
            continue
        figures: dict[str, Any] = {**v.figures, "evidence_op_ids": ids}
        if again is not None:
            figures["without_evidence"] = again.to_dict()
        marked = dataclasses.replace(v, finding=finding, figures=figures)
        findings[v.name] = marked.to_dict()
        out.append(marked)
    return out, findings
