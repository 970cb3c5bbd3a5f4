"""The dependency graph: typed edges between transactions, Tarjan's SCC, shortest cycles."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "ALL_KINDS",
    "DATA_KINDS",
    "KIND_NAMES",
    "PROCESS",
    "REALTIME",
    "RW",
    "WR",
    "WW",
    "DepGraph",
    "TimeUp",
    "shortest_cycle_through",
    "strongly_connected",
]

# Edge kinds, as bits: an edge between two transactions may be several kinds at once.
WW = 1  # write-write: a's append precedes b's in the key's version order
WR = 2  # write-read: b read the version a wrote
RW = 4  # read-write (anti-dependency): a read a version, b wrote the next one
PROCESS = 8  # a and b ran on one process, a first
REALTIME = 16  # a completed before b was invoked
DATA_KINDS = WW | WR | RW
ALL_KINDS = DATA_KINDS | PROCESS | REALTIME
KIND_NAMES = {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "realtime"}


class TimeUp(Exception):
    """The search passed its time bound: the verdict is unknown."""


@dataclass
class DepGraph:
    """Adjacency maps ``out[a][b] = kinds``, and for each (a, b, kind) why it exists."""

    out: dict[int, dict[int, int]] = field(default_factory=dict)
    #: The first reason recorded for each edge kind: a function so a reason string is
    #: only built for the edges of a witness.
    why: dict[tuple[int, int, int], Callable[[], str]] = field(default_factory=dict)

    def add_node(self, a: int) -> None:
        self.out.setdefault(a, {})

    def add(self, a: int, b: int, kind: int, why: Callable[[], str]) -> None:
        if a == b:
            return  # a transaction's dependence on itself is no edge
        targets = self.out.setdefault(a, {})
        self.out.setdefault(b, {})
        kinds = targets.get(b, 0)
        if not kinds & kind:
            targets[b] = kinds | kind
            self.why[(a, b, kind)] = why

    def edge_count(self) -> int:
        return sum(len(t) for t in self.out.values())


def strongly_connected(
    graph: DepGraph,
    kinds: int,
    check: Callable[[], None],
    nodes: Iterable[int] | None = None,
    ranks: dict[int, int] | None = None,
) -> list[list[int]]:
    """The strongly connected components of more than one node, over edges of ``kinds``
    (Tarjan's algorithm, iterative: a history's graph is deeper than Python's stack).

    ``ranks``, when given, is filled with each node's component number in the order
    Tarjan completes them (singletons too): that is reverse topological, so an edge
    between components goes from a higher rank to a lower one, and ``b`` can reach
    ``a`` only if ``ranks[b] >= ranks[a]``."""
    out = graph.out
    allowed = set(out) if nodes is None else set(nodes)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    completed = 0
    # With ranks asked for, roots in id order (invocation order): then the ranks of a
    # history that ran about in order follow that order, and prune searches the most.
    for root in sorted(allowed) if ranks is not None else allowed:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(out[root].items()))]
        while work:
            check()
            node, edges = work[-1]
            advanced = False
            for target, k in edges:
                if not k & kinds or target not in allowed:
                    continue
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(out[target].items())))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if ranks is not None:
                    for member in component:
                        ranks[member] = completed
                completed += 1
                if len(component) > 1:
                    found.append(component)
    return found


def shortest_cycle_through(
    graph: DepGraph,
    first: tuple[int, int, int],
    kinds: int,
    within: set[int],
    check: Callable[[], None],
    ranks: dict[int, int] | None = None,
) -> list[tuple[int, int, int]] | None:
    """The shortest cycle that starts with edge ``first`` = (a, b, kind) and returns
    from b to a over edges of ``kinds`` inside ``within`` (breadth first), as a list
    of (from, to, kind) steps; None if there is none.

    ``ranks``: ``strongly_connected``'s over the same ``kinds`` and ``within``; a node
    ranked below a cannot reach it and is not searched (the shortest path is kept)."""
    a, b, _ = first
    if b == a:
        return None
    floor = ranks[a] if ranks is not None else None
    if ranks is not None and floor is not None and ranks[b] < floor:
        return None
    parent: dict[int, tuple[int, int]] = {b: (b, 0)}
    queue = deque([b])
    out = graph.out
    while queue:
        check()
        node = queue.popleft()
        for target, k in out[node].items():
            usable = k & kinds
            if not usable or target not in within or target in parent:
                continue
            if floor is not None and ranks is not None and ranks[target] < floor:
                continue
            # Prefer the data kinds' meaning when an edge is several kinds at once.
            step = next(bit for bit in (WW, WR, RW, PROCESS, REALTIME) if usable & bit)
            parent[target] = (node, step)
            if target == a:
                path = [(node, a, step)]
                while node != b:
                    prev, pk = parent[node]
                    path.append((prev, node, pk))
                    node = prev
                path.reverse()
                return [first, *path]
            queue.append(target)
    return None
