"""Cycle search and classification: the shortest witness of each anomaly class per SCC."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from experiments.elle._graph import (
    KIND_NAMES,
    PROCESS,
    REALTIME,
    RW,
    WR,
    WW,
    DepGraph,
    shortest_cycle_through,
    strongly_connected,
)
from experiments.elle._history import Txn

__all__ = ["CYCLE_CLASSES", "Witness", "find_cycles"]

#: The classes of cycle, weakest first (Adya): G0 ww only; G1c ww and wr; G-single
#: exactly one rw; G2-item two or more rw.
CYCLE_CLASSES = ("G0", "G1c", "G-single", "G2-item")

# Edges tried per class and component: each try is one breadth-first search, and the
# shortest of the tries is the witness (exact for components of this many edges or fewer).
_TRIES = 24
# rw edges tried for a G-single: only its search can miss a cycle that exists.
_RW_TRIES = 400


@dataclass(frozen=True)
class Witness:
    """One cycle: its class, its transactions in order, and each step with its reason."""

    anomaly: str
    steps: tuple[tuple[int, int, int], ...]

    def to_dict(self, graph: DepGraph, txns: dict[int, Txn]) -> dict[str, Any]:
        return {
            "anomaly": self.anomaly,
            "cycle": [a for a, _, _ in self.steps] + [self.steps[0][0]],
            "txns": [str(txns[a]) for a, _, _ in self.steps],
            "edges": [
                {
                    "from": a,
                    "to": b,
                    "kind": KIND_NAMES[k],
                    "why": graph.why[(a, b, k)](),
                }
                for a, b, k in self.steps
            ],
        }


def _name(base: str, steps: list[tuple[int, int, int]]) -> str:
    kinds = {k for _, _, k in steps}
    if REALTIME in kinds:
        return f"{base}-realtime"
    if PROCESS in kinds:
        return f"{base}-process"
    return base


def find_cycles(
    graph: DepGraph, order_kinds: int, check: Callable[[], None]
) -> tuple[list[Witness], set[str]]:
    """For each strongly connected component, the shortest cycle found of each class,
    and the classes whose search was cut short (not every candidate edge tried) in a
    component where none was found: there such a cycle may still exist.

    ``order_kinds`` are the process and realtime edges in this graph (0: none). A class
    is searched on data edges first; only when a component has no such cycle is it
    searched again with the order edges, and named ``<class>-realtime`` (or
    ``-process``) when the witness needs one.
    """
    found: list[Witness] = []
    cut: set[str] = set()
    everything = WW | WR | RW | order_kinds
    for component in strongly_connected(graph, everything, check):
        within = set(component)
        for extra in (0, order_kinds) if order_kinds else (0,):
            got, short = _classify(graph, within, extra, check)
            found.extend(got)
            cut |= short
            if got:
                break
    return found, cut


def _edges(graph: DepGraph, within: set[int], kind: int) -> list[tuple[int, int, int]]:
    return [
        (a, b, kind)
        for a in sorted(within)
        for b, k in graph.out[a].items()
        if k & kind and b in within
    ]


def _shortest(
    graph: DepGraph,
    starts: list[tuple[int, int, int]],
    kinds: int,
    within: set[int],
    check: Callable[[], None],
    accept: Callable[[list[tuple[int, int, int]]], bool],
    tries: int = _TRIES,
    ranks: dict[int, int] | None = None,
) -> list[tuple[int, int, int]] | None:
    """The shortest accepted cycle through the first ``tries`` starts that have one."""
    best: list[tuple[int, int, int]] | None = None
    for first in starts[:tries]:
        cycle = shortest_cycle_through(graph, first, kinds, within, check, ranks)
        if cycle is not None and accept(cycle) and (best is None or len(cycle) < len(best)):
            best = cycle
    return best


def _classify(
    graph: DepGraph, within: set[int], extra: int, check: Callable[[], None]
) -> tuple[list[Witness], set[str]]:
    out: list[Witness] = []
    cut: set[str] = set()

    def name(base: str, c: list[tuple[int, int, int]]) -> str:
        return _name(base, c) if extra else base

    # G0: a cycle of ww edges only. Exists exactly when some component of the ww
    # subgraph has two nodes; a search from any ww edge inside it comes back.
    for sub in strongly_connected(graph, WW | extra, check, within):
        members = set(sub)
        c = _shortest(graph, _edges(graph, members, WW), WW | extra, members, check, bool)
        if c is not None:
            out.append(Witness(name("G0", c), tuple(c)))
            break
    # G1c: ww and wr with at least one wr. Exists exactly when a wr edge lies inside a
    # component of the ww+wr subgraph: start there (the cycle starts with it).
    for sub in strongly_connected(graph, WW | WR | extra, check, within):
        members = set(sub)
        c = _shortest(graph, _edges(graph, members, WR), WW | WR | extra, members, check, bool)
        if c is not None:
            out.append(Witness(name("G1c", c), tuple(c)))
            break
    # G-single: exactly one rw: start on it, come back over ww/wr only. Whether one
    # exists needs a search from every rw edge: past _RW_TRIES the search is cut.
    # Only an rw edge a -> b whose b can reach a over those edges can start one, and a
    # search back to a needs no node that cannot reach a: the condensation's order
    # (``ranks``) rules out both, so the rw edges that run forward (in a long history
    # nearly all) cost nothing instead of a search of the whole component each.
    rw_starts = _edges(graph, within, RW)
    ranks: dict[int, int] = {}
    strongly_connected(graph, WW | WR | extra, check, within, ranks)
    single_starts = [(a, b, k) for a, b, k in rw_starts if ranks[b] >= ranks[a]]
    c = _shortest(graph, single_starts, WW | WR | extra, within, check, bool, _RW_TRIES, ranks)
    if c is not None:
        out.append(Witness(name("G-single", c), tuple(c)))
    elif len(single_starts) > _RW_TRIES:
        cut.add("G-single")
    # G2-item: two or more rw edges.
    c = _shortest(
        graph,
        rw_starts,
        WW | WR | RW | extra,
        within,
        check,
        lambda c: sum(1 for _, _, k in c if k == RW) >= 2,
    )
    if c is not None:
        out.append(Witness(name("G2-item", c), tuple(c)))
    return out, cut
