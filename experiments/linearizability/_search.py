"""Lowe's variant of the Wing-Gong search: one coupon's ops in one real-time order.

The search is Lowe's variant of Wing and Gong's, as Knossos and Porcupine run it:
a linked list of call and return events, the calls before the first pending return
are the candidates, and a (linearized-set, state) pair already explored is never
explored again. Here every linearized op either had its recorded effect or (an
indeterminate op) is only ever linearized when it takes effect, so the state is a
function of the linearized set and the memo key is that bitset alone. Two sound
cuts keep stampedes linear:

* an op with no effect whose outcome fits the current state is placed at once, with
  no alternative tried (it can be moved to the front of any valid completion);
* the state is monotone (the coupon appears once, claimants only grow, stock only
  falls), so a pending op that needs an earlier state kills the branch at once.

Real-time order is the event list's (an op whose return precedes another's call comes
first), and, for ops timed on one process clock (``PreparedOp.clock``), their own
order on that clock as well: such an op is a candidate only once every op of its
process that completed before it was invoked is linearized.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.linearizability._model import CLAIM, CREATE, GET, PreparedOp, expected

__all__ = ["MAX_STATES", "SearchResult", "search"]

# How often (in search steps) the clock is read: often enough to stop within a few ms.
_CLOCK_EVERY = 512
# Each memo entry costs about 100 bytes: past this many the search gives up (unknown)
# rather than take the memory of the machine it shares.
MAX_STATES = 2_000_000


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What one search decided, how many states it stored, and where it got stuck."""

    status: bool | None  # True linearizable, False not, None out of time
    states: int
    stuck: int  # index of the op the deepest branch could not place, -1 if none


def _same_clock_predecessors(ops: Sequence[PreparedOp]) -> list[int]:
    """Per op, the bitset of ops it must follow by its own process clock alone.

    The event list already orders ops whose widened intervals do not overlap; this
    adds the pairs of one process whose widened intervals overlap, though its clock
    says one completed before the other began.
    """
    after = [0] * len(ops)
    by_clock: dict[int, list[int]] = {}
    for i, o in enumerate(ops):
        if o.clock >= 0:
            by_clock.setdefault(o.clock, []).append(i)
    for members in by_clock.values():
        done = sorted((ops[i].own_complete, i) for i in members if ops[i].determinate)
        for b in members:
            ob = ops[b]
            for own_complete, a in done:
                if own_complete >= ob.own_invoke:
                    break
                if ops[a].complete >= ob.invoke:  # not already ordered by the event list
                    after[b] |= 1 << a
    return after


def search(
    ops: Sequence[PreparedOp], initial: int | None, deadline: float, max_states: int = MAX_STATES
) -> SearchResult:
    """Lowe's WGL search over one coupon's ops; ``initial`` is a pre-existing stock."""
    n = len(ops)
    n_det = sum(1 for o in ops if o.determinate)
    if n_det == 0:
        return SearchResult(True, 0, -1)

    # Events sorted by time; at equal times calls first (equal times are concurrent).
    events: list[tuple[int, int, int]] = []
    for i, o in enumerate(ops):
        events.append((o.invoke, 0, i))
        if o.determinate:
            events.append((o.complete, 1, i))
    events.sort()
    m = len(events)
    head, tail = m, m + 1
    nxt = [0] * (m + 2)
    prv = [0] * (m + 2)
    ev_op = [0] * m
    ev_ret = [False] * m
    call_ev = [-1] * n
    ret_ev = [-1] * n
    order = [head, *range(m), tail]
    for a, b in itertools.pairwise(order):
        nxt[a] = b
        prv[b] = a
    for k, (_, is_ret, i) in enumerate(events):
        ev_op[k] = i
        ev_ret[k] = bool(is_ret)
        if is_ret:
            ret_ev[i] = k
        else:
            call_ev[i] = k

    # Pending ops whose outcome a state change can rule out for good.
    not_found_det = [i for i, o in enumerate(ops) if o.determinate and o.result == "not_found"]
    ok_create_det = [i for i, o in enumerate(ops) if o.effectful and o.kind == CREATE]
    ok_claim_det = [i for i, o in enumerate(ops) if o.effectful and o.kind == CLAIM]
    gets_val = [
        i
        for i, o in enumerate(ops)
        if o.kind == GET
        and o.result == "ok"
        and (o.remaining is not None or o.claimed or o.read_amount is not None)
    ]
    after = _same_clock_predecessors(ops)
    by_user: dict[int, list[int]] = {}
    for i, o in enumerate(ops):
        if o.kind == CLAIM and o.determinate and o.result in ("ok", "no_stock"):
            by_user.setdefault(o.user, []).append(i)
    bits = [1 << i for i in range(n)]

    exists = initial is not None
    amount = initial if initial is not None else 0
    remaining = amount
    claimants: set[int] = set()
    in_lin = bytearray(n)
    lin = 0
    n_lin_det = 0
    cache: set[int] = set()
    # Frame: (op index, forced, exists before, amount before, remaining before, effect)
    stack: list[tuple[int, bool, bool, int, int, bool]] = []
    best, stuck = -1, -1
    steps = 0
    entry = nxt[head]

    def dead_after_effect(o: PreparedOp) -> int:
        """A pending op the new (monotone) state rules out for good, or -1."""
        if o.kind == CREATE:
            for j in not_found_det:
                if not in_lin[j]:
                    return j
            for j in ok_create_det:
                if not in_lin[j]:
                    return j
        else:
            for j in by_user.get(o.user, ()):
                if not in_lin[j]:
                    return j
        for j in gets_val:
            if in_lin[j]:
                continue
            g = ops[j]
            if g.remaining is not None and g.remaining > remaining:
                return j
            if o.kind == CREATE and g.read_amount is not None and g.read_amount != amount:
                return j
            if g.claimed is not None and o.kind == CLAIM and o.user not in g.claimed:
                return j
        if remaining <= 0:
            for j in ok_claim_det:
                if not in_lin[j]:
                    return j
        return -1

    while True:
        if n_lin_det == n_det:
            return SearchResult(True, len(cache), -1)
        steps += 1
        if steps % _CLOCK_EVERY == 0 and (time.monotonic() > deadline or len(cache) > max_states):
            return SearchResult(None, len(cache), stuck)

        blocked = -1  # the op whose return (or ruled-out outcome) ends this branch
        if entry == tail:
            blocked = n  # only optional ops are left and none helps
        elif ev_ret[entry]:
            blocked = ev_op[entry]
        else:
            i = ev_op[entry]
            o = ops[i]
            if after[i] and after[i] & ~lin:  # an earlier op of its own process is unplaced
                entry = nxt[entry]
                continue
            answer, effect = expected(o, exists, remaining, claimants)
            if o.determinate:
                fits = answer == o.result
                if fits and o.kind == GET and answer == "ok":
                    fits = (
                        (o.remaining is None or o.remaining == remaining)
                        and (o.read_amount is None or o.read_amount == amount)
                        and (o.claimed is None or o.claimed == claimants)
                        and not o.claimed_twice
                    )
            else:
                fits = effect  # an optional op is only worth placing when it acts
            if not fits:
                entry = nxt[entry]
                continue
            new_lin = lin | bits[i]
            forced = not effect
            if new_lin in cache:
                if not forced:
                    entry = nxt[entry]
                    continue
                blocked = n  # the forced step was explored before and failed
            else:
                cache.add(new_lin)
                stack.append((i, forced, exists, amount, remaining, effect))
                lin = new_lin
                in_lin[i] = 1
                if o.determinate:
                    n_lin_det += 1
                # Lift the op's call and return out of the event list.
                c = call_ev[i]
                nxt[prv[c]] = nxt[c]
                prv[nxt[c]] = prv[c]
                r = ret_ev[i]
                if r >= 0:
                    nxt[prv[r]] = nxt[r]
                    prv[nxt[r]] = prv[r]
                if effect:
                    if o.kind == CREATE:
                        exists, amount, remaining = True, o.amount, o.amount
                    else:
                        claimants.add(o.user)
                        remaining -= 1
                    dead = dead_after_effect(o)
                    if dead >= 0:
                        blocked = dead
                if blocked < 0:
                    entry = nxt[head]
                    continue

        # Backtrack: undo frames until one whose alternatives are still open.
        if n_lin_det > best and blocked < n:
            best, stuck = n_lin_det, blocked
        while True:
            if not stack:
                return SearchResult(False, len(cache), stuck)
            i, forced, exists, amount, remaining, effect = stack.pop()
            o = ops[i]
            if effect and o.kind == CLAIM:
                claimants.discard(o.user)
            lin &= ~bits[i]
            in_lin[i] = 0
            if o.determinate:
                n_lin_det -= 1
            r = ret_ev[i]
            if r >= 0:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
            c = call_ev[i]
            nxt[prv[c]] = c
            prv[nxt[c]] = c
            if not forced:
                entry = nxt[c]
                break
