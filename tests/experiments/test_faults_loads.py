"""The load wrapper the fault scenarios and the target experiments share."""

from __future__ import annotations

import time

import pytest

from experiments.faults.loads import BackingOff
from experiments.history import History, Op


class _Answers:
    """An inner client that ends each op with the next result of a script."""

    layer = "service"

    def __init__(self, results: list[str]) -> None:
        self.results = list(results)
        self.readied: list[list[Op]] = []
        self.released = 0
        self.closed = False

    def invoke(self, op: Op, history: History | None = None) -> Op:
        op.invoke_ns = time.monotonic_ns()
        op.result = self.results.pop(0)
        op.complete_ns = time.monotonic_ns()
        if history is not None:
            history.append(op)
        return op

    def ready(self, ops: list[Op]) -> None:
        self.readied.append(ops)

    def release(self) -> None:
        self.released += 1

    def close(self) -> None:
        self.closed = True


def _pauses(client: BackingOff, n: int) -> list[float]:
    """Seconds each invoke took beyond its op's own interval."""
    out = []
    for i in range(n):
        t0 = time.monotonic_ns()
        op = client.invoke(Op(i, 0, "claim", "c", user=f"u{i}"), History())
        out.append((time.monotonic_ns() - t0 - (op.complete_ns - op.invoke_ns)) / 1e9)
    return out


def test_pauses_after_the_listed_kinds_only() -> None:
    inner = _Answers(["ok", "unavailable", "unknown", "no_stock"])
    pauses = _pauses(BackingOff(inner, 0.2), 4)
    assert pauses[1] >= 0.2
    assert max(pauses[0], pauses[2], pauses[3]) < 0.2


@pytest.mark.parametrize("kind", ["unknown", "unavailable"])
def test_a_target_load_also_pauses_after_a_cut_request(kind: str) -> None:
    inner = _Answers(["ok", kind])
    pauses = _pauses(BackingOff(inner, 0.2, on=("unknown", "unavailable")), 2)
    assert pauses[0] < 0.2 <= pauses[1]


def test_the_pause_is_not_in_the_recorded_latency() -> None:
    history = History()
    op = BackingOff(_Answers(["unavailable"]), 0.2).invoke(Op(1, 0, "get", "c"), history)
    assert (op.complete_ns - op.invoke_ns) / 1e9 < 0.2
    assert history.ops == [op]


def test_ready_release_and_close_reach_the_inner_client() -> None:
    inner = _Answers([])
    client = BackingOff(inner, 0.1)
    ops = [Op(1, 0, "claim", "c", user="u")]
    client.ready(ops)
    client.release()
    client.close()
    assert inner.readied == [ops]
    assert inner.released == 1
    assert inner.closed
