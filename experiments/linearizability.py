"""A linearizability checker for coupon histories: Wing-Gong/Lowe search, one coupon at a time.

The question: is there one total order of the operations, consistent with real time
(an op that completed before another was invoked comes first), in which each op's
outcome is what the sequential coupon service returns? Coupons are independent, so
each coupon's ops are checked on their own (P-compositionality, as in Porcupine).

Sequential model per coupon: ``(exists, amount, remaining, claimants)``.

* create: ``ok`` if the coupon does not exist, else ``coupon_exists``.
* claim: ``not_found``, ``already_claimed``, ``no_stock`` in that order, else ``ok``.
* get: ``not_found``, or the value (``remaining_amount``; ``claimed_by`` as a set).

``invalid`` results never touch state and are left out. Indeterminate results
(``experiments.history.INDETERMINATE``) may take effect at any point after their
invoke, or never: their completion is infinity and they may be dropped.

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

A failure names the coupon and a small core of ops: the history is cut after the
op the search could not place (linearizability is prefix-closed), then ops are
relaxed one chunk at a time (ops without effect removed, effects made optional)
while the rest still cannot be linearized. Past the time limit the verdict is
unknown (``passed=None``), never a pass.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from experiments.history import INDETERMINATE, History, Op, OpKind
from experiments.result import Verdict

__all__ = [
    "CHECK_NAME",
    "LINEARIZABLE_TIME_LIMIT_S",
    "check_linearizable",
    "simulate_history",
    "started_ops",
]

CHECK_NAME = "linearizable"
#: The bound the scenario pipelines give the check: past it the verdict is unknown.
LINEARIZABLE_TIME_LIMIT_S = 10.0

_CREATE, _CLAIM, _GET = 0, 1, 2
_KIND_CODES = {"create": _CREATE, "claim": _CLAIM, "get": _GET}
_INF = 1 << 62
# How often (in search steps) the clock is read: often enough to stop within a few ms.
_CLOCK_EVERY = 512
# Each memo entry costs about 100 bytes: past this many the search gives up (unknown)
# rather than take the memory of the machine it shares.
MAX_STATES = 2_000_000


@dataclass(frozen=True, slots=True)
class _Op:
    """One op of a coupon's partition, in the form the search needs."""

    op_id: int
    kind: int
    result: str  # the recorded result; meaningless when not determinate
    determinate: bool
    user: int  # interned user id, -1 when none
    amount: int
    invoke: int
    complete: int  # _INF when indeterminate
    remaining: int | None = None  # a successful get's remaining_amount, when recorded
    claimed: frozenset[int] | None = None  # a successful get's claimed_by, when recorded

    @property
    def effectful(self) -> bool:
        """Whether the recorded outcome changed the coupon (an ok create or claim)."""
        return self.determinate and self.result == "ok" and self.kind != _GET


@dataclass(frozen=True, slots=True)
class _Search:
    status: bool | None  # True linearizable, False not, None out of time
    states: int
    stuck: int  # index of the op the deepest branch could not place, -1 if none


def _prepare(ops: Iterable[Op], users: dict[str, int]) -> list[_Op]:
    out: list[_Op] = []
    for op in ops:
        if op.result == "invalid":
            continue  # rejected before touching state
        determinate = op.result not in INDETERMINATE
        kind = _KIND_CODES[op.kind]
        if kind == _GET and not determinate:
            continue  # a read with no answer constrains nothing
        user = -1
        if op.user is not None:
            user = users.setdefault(op.user, len(users))
        remaining: int | None = None
        claimed: frozenset[int] | None = None
        if kind == _GET and op.result == "ok" and op.value is not None:
            raw_remaining = op.value.get("remaining_amount")
            remaining = int(raw_remaining) if raw_remaining is not None else None
            raw_claimed = op.value.get("claimed_by")
            if raw_claimed is not None:
                claimed = frozenset(users.setdefault(str(u), len(users)) for u in raw_claimed)
        complete = max(op.complete_ns, op.invoke_ns) if determinate else _INF
        out.append(
            _Op(
                op_id=op.op_id,
                kind=kind,
                result=op.result,
                determinate=determinate,
                user=user,
                amount=op.amount if op.amount is not None else 0,
                invoke=op.invoke_ns,
                complete=complete,
                remaining=remaining,
                claimed=claimed,
            )
        )
    return out


def _expected(op: _Op, exists: bool, remaining: int, claimants: set[int]) -> tuple[str, bool]:
    """What the sequential service answers to ``op`` now, and whether it changes state."""
    if op.kind == _CREATE:
        return ("coupon_exists", False) if exists else ("ok", True)
    if not exists:
        return "not_found", False
    if op.kind == _GET:
        return "ok", False
    if op.user in claimants:
        return "already_claimed", False
    if remaining <= 0:
        return "no_stock", False
    return "ok", True


def _search(
    ops: Sequence[_Op], initial: int | None, deadline: float, max_states: int = MAX_STATES
) -> _Search:
    """Lowe's WGL search over one coupon's ops; ``initial`` is a pre-existing stock."""
    n = len(ops)
    n_det = sum(1 for o in ops if o.determinate)
    if n_det == 0:
        return _Search(True, 0, -1)

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
    ok_create_det = [i for i, o in enumerate(ops) if o.effectful and o.kind == _CREATE]
    ok_claim_det = [i for i, o in enumerate(ops) if o.effectful and o.kind == _CLAIM]
    gets_val = [
        i
        for i, o in enumerate(ops)
        if o.kind == _GET and o.result == "ok" and (o.remaining is not None or o.claimed)
    ]
    by_user: dict[int, list[int]] = {}
    for i, o in enumerate(ops):
        if o.kind == _CLAIM and o.determinate and o.result in ("ok", "no_stock"):
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

    def dead_after_effect(o: _Op) -> int:
        """A pending op the new (monotone) state rules out for good, or -1."""
        if o.kind == _CREATE:
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
            if g.claimed is not None and o.kind == _CLAIM and o.user not in g.claimed:
                return j
        if remaining <= 0:
            for j in ok_claim_det:
                if not in_lin[j]:
                    return j
        return -1

    while True:
        if n_lin_det == n_det:
            return _Search(True, len(cache), -1)
        steps += 1
        if steps % _CLOCK_EVERY == 0 and (time.monotonic() > deadline or len(cache) > max_states):
            return _Search(None, len(cache), stuck)

        blocked = -1  # the op whose return (or ruled-out outcome) ends this branch
        if entry == tail:
            blocked = n  # only optional ops are left and none helps
        elif ev_ret[entry]:
            blocked = ev_op[entry]
        else:
            i = ev_op[entry]
            o = ops[i]
            answer, effect = _expected(o, exists, remaining, claimants)
            if o.determinate:
                fits = answer == o.result
                if fits and o.kind == _GET and answer == "ok":
                    fits = (o.remaining is None or o.remaining == remaining) and (
                        o.claimed is None or o.claimed == claimants
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
                    if o.kind == _CREATE:
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
                return _Search(False, len(cache), stuck)
            i, forced, exists, amount, remaining, effect = stack.pop()
            o = ops[i]
            if effect and o.kind == _CLAIM:
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


# -- quick necessary conditions --------------------------------------------------------


def _precheck(ops: Sequence[_Op], initial: int | None) -> tuple[str, list[int]] | None:
    """A contradiction found by counting, with the ops behind it; None when none is."""
    by_complete = sorted(ops, key=lambda o: (o.complete, o.op_id))
    ok_creates = [o for o in by_complete if o.effectful and o.kind == _CREATE]
    if len(ok_creates) > 1 or (ok_creates and initial is not None):
        return "the coupon was created twice", [o.op_id for o in ok_creates[:2]]
    ok_claims = [o for o in by_complete if o.effectful and o.kind == _CLAIM]
    seen: dict[int, _Op] = {}
    for o in ok_claims:
        if o.user in seen:
            return "one user claimed the coupon twice", [seen[o.user].op_id, o.op_id]
        seen[o.user] = o
    if ok_creates:
        stock, sources = ok_creates[0].amount, [ok_creates[0]]
    elif initial is not None:
        stock, sources = initial, []
    else:
        maybe = [o for o in ops if o.kind == _CREATE and not o.determinate]
        stock = max((o.amount for o in maybe), default=0)
        sources = [max(maybe, key=lambda o: o.amount)] if maybe else []
    amounts = {o.amount for o in ops if o.kind == _CREATE} if not ok_creates else {stock}
    if initial is not None:
        amounts = {initial}
    if ok_claims and not sources and initial is None:
        return "a claim succeeded on a coupon never created", [ok_claims[0].op_id]
    if len(ok_claims) > stock:
        witness = [o.op_id for o in sources] + [o.op_id for o in ok_claims[: stock + 1]]
        return f"{len(ok_claims)} successful claims on a stock of {stock}", witness
    for g in ops:
        if g.remaining is None or g.claimed is None:
            continue
        if all(a - len(g.claimed) != g.remaining for a in amounts):
            why = "a read's remaining stock does not match its number of claimants"
            return why, [o.op_id for o in sources] + [g.op_id]
    claimers: dict[int, _Op] = {}
    for o in ops:
        claimer = o.kind == _CLAIM and (o.result == "ok" or not o.determinate)
        if claimer and (o.user not in claimers or o.invoke < claimers[o.user].invoke):
            claimers[o.user] = o
    for g in ops:
        if g.claimed is None:
            continue
        for u in g.claimed:
            c = claimers.get(u)
            if c is None or c.invoke > g.complete:
                why = "a read lists a claimant with no claim that could have happened before it"
                return why, [g.op_id] + ([c.op_id] if c is not None else [])
    return None


# -- shrinking a failure to its core ---------------------------------------------------


def _relax(o: _Op) -> _Op | None:
    """A weaker op (None: drop it) such that a history that fails still fails weaker."""
    if not o.determinate:
        return o
    if not o.effectful:
        return None  # an op without effect constrains only itself
    return replace(o, determinate=False, result="unknown", complete=_INF)


def _truncate(ops: Sequence[_Op], at: int) -> list[_Op]:
    """The history as it stood at time ``at``: later ops gone, ops in flight relaxed."""
    out: list[_Op] = []
    for o in ops:
        if o.invoke > at:
            continue
        if o.complete > at:
            relaxed = _relax(o)
            if relaxed is not None:
                out.append(relaxed)
        else:
            out.append(o)
    return out


def _shrink(
    ops: Sequence[_Op], initial: int | None, stuck: int, deadline: float
) -> tuple[list[_Op], bool]:
    """A small sub-history that still cannot be linearized; True when fully shrunk."""

    def fails(candidate: Sequence[_Op]) -> bool:
        check_deadline = min(deadline, time.monotonic() + 0.25)
        return _search(candidate, initial, check_deadline).status is False

    current = list(ops)
    if 0 <= stuck < len(ops) and ops[stuck].determinate:
        cut = _truncate(ops, ops[stuck].complete)
        if fails(cut):
            current = cut
    chunk = max(1, len(current) // 2)
    while True:
        i = 0
        while i < len(current):
            if time.monotonic() > deadline:
                return current, False
            part = current[i : i + chunk]
            weaker = [w for w in (_relax(o) for o in part) if w is not None]
            if weaker != part:
                candidate = current[:i] + weaker + current[i + chunk :]
                if fails(candidate):
                    current = candidate
                    i += len(weaker)
                    continue
            i += chunk
        if chunk == 1:
            return current, True
        chunk = max(1, chunk // 2)


# -- the check -------------------------------------------------------------------------


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
) -> Verdict:
    """Whether ``history`` is linearizable against the sequential coupon service.

    ``initial`` maps coupons that existed before the history began (created outside
    it) to their stock; any other coupon starts absent. ``passed`` is None when the
    time limit ran out before an answer, never True. On failure, ``figures`` hold the
    coupon, ``witness_op_ids`` (a small set of ops that cannot be linearized together,
    whatever the others did), ``context_op_ids`` (ops kept beside them as optional:
    they may or may not have happened) and ``stuck_op_id`` (the op the search could
    not place).
    """
    started = time.monotonic()
    deadline = started + time_limit_s
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
        ops = _prepare(by_coupon[coupon], users)
        checked_ops += len(ops)
        indeterminate += sum(1 for o in ops if not o.determinate)
        start_stock = initial.get(coupon)
        pre = _precheck(ops, start_stock)
        if pre is not None:
            failures.append(_Failure(coupon, pre[0], sorted(pre[1]), None, True))
            continue
        if time.monotonic() > deadline:
            unknown.append(coupon)
            continue
        found = _search(ops, start_stock, deadline)
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
                core, complete = _shrink(ops, start_stock, found.stuck, time.monotonic() + budget)
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
        return Verdict(CHECK_NAME, False, _fail_detail(worst) + more, dict(figures))
    if unknown:
        figures["unknown_coupons"] = sorted(unknown)
        detail = (
            f"out of time after {elapsed:.2f}s: {len(unknown)} of {len(by_coupon)} coupons "
            "not decided"
        )
        return Verdict(CHECK_NAME, None, detail, dict(figures))
    detail = f"{checked_ops} ops on {len(by_coupon)} coupons fit one real-time order"
    return Verdict(CHECK_NAME, True, detail, dict(figures))


def started_ops(history: History) -> History:
    """``history`` without the ops the runner never started (its time bound passed).

    Such an op is recorded ``unknown``; it did not happen, and leaving it in as
    "may have happened" would let it explain away an effect it never had.
    """
    from experiments.runner import NOT_STARTED

    return History(
        ops=[o for o in history.ops if o.message != NOT_STARTED], origin_ns=history.origin_ns
    )


# -- valid histories by simulation -----------------------------------------------------


def simulate_history(
    seed: int,
    *,
    coupons: int = 1,
    ops: int = 1000,
    stock: int = 100,
    workers: int = 16,
    users: int | None = None,
    gets: float = 0.2,
    creates: float = 0.02,
    unknown: float = 0.0,
    stampede: bool = False,
) -> History:
    """A linearizable history: a seeded concurrent run against the sequential model.

    Each op gets a random interval and takes effect at a random instant inside it
    (its linearization point); results come from applying the ops in that order.
    ``stampede`` starts every claim within a few microseconds, as a barrier does.
    ``unknown`` is the share of ops whose outcome is lost (their effect, if any,
    lands with probability one half). Each coupon is created before anything else.
    """
    import random

    rng = random.Random(seed)
    names = [f"c{k}" for k in range(coupons)]
    user_pool = users if users is not None else max(1, ops // 2)
    planned: list[
        tuple[int, int, int, OpKind | None, str]
    ] = []  # invoke, complete, point, kind, coupon
    for name in names:
        planned.append((0, 1_000, 500, "create", name))
    if stampede:
        for _ in range(ops - coupons):
            invoke = 2_000 + rng.randrange(5_000)
            complete = invoke + 1_000 + rng.randrange(200_000)
            planned.append((invoke, complete, rng.randrange(invoke, complete + 1), None, ""))
    else:
        per_worker = max(1, (ops - coupons) // workers)
        for _ in range(workers):
            t = 2_000 + rng.randrange(10_000)
            for _ in range(per_worker):
                invoke = t + rng.randrange(2_000)
                complete = invoke + 500 + rng.randrange(20_000)
                planned.append((invoke, complete, rng.randrange(invoke, complete + 1), None, ""))
                t = complete
    state: dict[str, tuple[int, int, list[str]]] = {}  # amount, remaining, claimants
    history = History(origin_ns=0)
    for op_id, (invoke, complete, _, kind, coupon) in enumerate(
        sorted(planned, key=lambda p: p[2])
    ):
        if kind is None:
            roll = rng.random()
            kind = "create" if roll < creates else "get" if roll < creates + gets else "claim"
            coupon = rng.choice(names)
        op = Op(
            op_id, op_id % max(workers, 1), kind, coupon, invoke_ns=invoke, complete_ns=complete
        )
        lost = rng.random() < unknown and kind != "create"
        lands = not lost or rng.random() < 0.5
        current = state.get(coupon)
        if kind == "create":
            op.amount = stock
            op.result = "coupon_exists" if current else "ok"
            if current is None and lands:
                state[coupon] = (stock, stock, [])
        elif kind == "get":
            op.result = "not_found" if current is None else "ok"
            if current is not None:
                op.value = {"remaining_amount": current[1], "claimed_by": list(current[2])}
        else:
            op.user = f"u{rng.randrange(user_pool)}"
            if current is None:
                op.result = "not_found"
            elif op.user in current[2]:
                op.result = "already_claimed"
            elif current[1] <= 0:
                op.result = "no_stock"
            else:
                op.result = "ok"
                if lands:
                    state[coupon] = (current[0], current[1] - 1, [*current[2], op.user])
        if lost:
            op.result, op.value = "unknown", None
        history.append(op)
    return history
