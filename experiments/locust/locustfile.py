"""The Locust side of the lab: a master that conducts a seeded plan, and users that run it.

Loaded only by Locust processes (``locust -f`` this file): importing locust
monkey-patches the standard library with gevent, so the lab's own process and pytest
never import this module (``experiments.locust`` imports only the driver).

The master, once Locust has spawned the users on every worker, hands each worker
its share of the plan (plan workers partitioned by worker index, sized by the users
Locust gave it), measures each worker's clock by round trips, agrees a start instant
and sends it on each worker's own clock, collects the finished ops as the workers
stream them, measures the clocks again, writes everything to the file the driver
named, and quits. A worker that stops answering heartbeats is lost: what it sent is
kept, the rest is the driver's to mark unknown.

Each user runs one plan worker's ops, in order, with the lab's ``HttpClient`` (every
op recorded with invoke and complete times and a result kind; the client never
raises), and reports each op to Locust's statistics as ``<kind>:<result>``, a failure
when the outcome is unknown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict
from typing import Any

import gevent
import gevent.lock
from gevent import monkey
from gevent.event import AsyncResult, Event
from locust import User, constant, events, task
from locust import runners as _runners
from locust.env import Environment
from locust.rpc import Message
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from experiments.clients import HttpClient
from experiments.history import Op, outcome_of
from experiments.locust._protocol import (
    DIE_ENV,
    OUT_ENV,
    PING_TIMEOUT_S,
    SERIAL_ENV,
    SKEW_ENV,
    SPEC_ENV,
    STEP_ENV,
    op_from_row,
)

#: Batches of finished ops go to the master this often.
FLUSH_S = 0.1
#: Clock round trips per worker, before and after the run.
SYNC_ROUNDS = 8

# Heartbeats (1 s apart) a worker may miss before the master calls it missing: Locust's
# 3 marked healthy workers missing on a 2-core machine shared with the server and the
# database; 8 still notices a dead worker within about 10 s.
_runners.HEARTBEAT_LIVENESS = 8
# httpx logs every request at INFO: a line per op, formatted and shipped to the master.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _ms_to_ns(text: str | None) -> int:
    return int(float(text) * 1_000_000) if text else 0


class _Worker:
    """A worker process's side: its share, its (possibly skewed) clock, its finished ops."""

    def __init__(self, env: Environment, runner: WorkerRunner) -> None:
        self.env = env
        self.runner = runner
        self.skew_ns = _ms_to_ns(os.environ.get(SKEW_ENV))
        self.step_ns = _ms_to_ns(os.environ.get(STEP_ENV))
        self.die_after = int(os.environ.get(DIE_ENV) or 0)
        # A plant for tests: one op at a time in this process, whatever its users.
        self.serial = gevent.lock.Semaphore() if os.environ.get(SERIAL_ENV) else None
        self.stepped = False
        self.assigned = Event()
        self.go = Event()
        self.start_at_ns = 0
        self.base_url = ""
        self.op_timeout_s = 10.0
        self.bound_s = 60.0
        self.shares: list[tuple[int, list[dict[str, Any]]]] = []
        self.holders = 0
        self.finished: list[dict[str, Any]] = []
        self.sent = 0
        self.completed = 0
        self.busy = 0
        self.client: HttpClient | None = None
        runner.register_message("lab_share", self.on_share)
        runner.register_message("lab_ping", self.on_ping)
        runner.register_message("lab_go", self.on_go)

    def now(self) -> int:
        return time.monotonic_ns() + self.skew_ns

    def on_share(self, environment: Environment, msg: Message) -> None:
        data = msg.data
        self.base_url = data["base_url"]
        self.op_timeout_s = float(data["op_timeout_s"])
        self.bound_s = float(data["bound_s"])
        self.shares = [(int(w), [op_from_row(r) for r in rows]) for w, rows in data["shares"]]
        self.holders = len(self.shares)
        self.busy = self.holders
        # One client (one connection pool, one TLS context) for the process's users:
        # building one per user took seconds of CPU and starved Locust's heartbeats.
        self.client = HttpClient(
            self.base_url, timeout_s=self.op_timeout_s, max_connections=max(1, self.holders)
        )
        self.assigned.set()
        gevent.spawn(self.report_ready)
        gevent.spawn(self.flusher)

    def report_ready(self) -> None:
        # Every user that will hold a share has taken it and warmed its connection.
        deadline = time.monotonic() + self.bound_s
        while self.holders > 0 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        self.runner.send_message("lab_ready", {"waiting": self.holders})

    def on_ping(self, environment: Environment, msg: Message) -> None:
        self.runner.send_message("lab_pong", {"seq": msg.data["seq"], "t": self.now()})

    def on_go(self, environment: Environment, msg: Message) -> None:
        self.start_at_ns = int(msg.data["start_at"])
        self.go.set()

    def take(self) -> tuple[int, list[dict[str, Any]]] | None:
        return self.shares.pop(0) if self.shares else None

    def wait_start(self) -> None:
        self.go.wait(self.bound_s)
        delay = (self.start_at_ns - self.now()) / 1e9
        if delay > 0:
            gevent.sleep(delay)
        if not self.stepped:
            # The injected step lands at the start instant, after the clock was measured.
            self.stepped = True
            self.skew_ns += self.step_ns

    def record(self, op: Op) -> None:
        op.invoke_ns += self.skew_ns
        op.complete_ns += self.skew_ns
        self.finished.append(asdict(op))
        self.completed += 1
        if self.die_after and self.completed >= self.die_after:
            self.flush()
            # Block the whole process (no other user records an op meanwhile) while
            # ZeroMQ's own thread sends the batch; the ops in flight die with it.
            monkey.get_original("time", "sleep")(0.05)
            os.kill(os.getpid(), signal.SIGKILL)

    def flush(self) -> None:
        if self.sent < len(self.finished):
            batch = self.finished[self.sent :]
            self.sent = len(self.finished)
            self.runner.send_message("lab_ops", {"ops": batch})

    def flusher(self) -> None:
        deadline = time.monotonic() + 3 * self.bound_s
        while self.busy > 0 and time.monotonic() < deadline:
            self.flush()
            gevent.sleep(FLUSH_S)
        self.flush()
        if self.client is not None:
            self.client.close()
        # Locust's statistics go to the master every 3 s; send them now, ahead of
        # lab_done on the same channel, so the master quits with every request counted.
        self.runner._send_stats()
        self.runner.send_message("lab_done", {"ops": self.completed})


class _Link:
    """The master's view of one worker."""

    def __init__(self, node_id: str, index: int, users: int) -> None:
        self.node_id = node_id
        self.index = index
        self.users = users
        self.plan_workers: list[int] = []
        self.ops: list[dict[str, Any]] = []
        self.sync_before: list[list[int]] = []
        self.sync_after: list[list[int]] = []
        self.ready = False
        self.done = False
        self.lost = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "node_id": self.node_id,
            "users": self.users,
            "plan_workers": self.plan_workers,
            "ops": self.ops,
            "sync_before": self.sync_before,
            "sync_after": self.sync_after,
            "done": self.done,
            "lost": self.lost,
        }


def partition(plan_workers: list[int], capacities: list[int]) -> tuple[list[list[int]], list[int]]:
    """Plan workers to Locust workers (in index order): round robin, within each one's users.

    Deterministic in the plan and the capacities (Locust spreads users evenly, so a seed
    replays the same split); plan workers beyond every capacity come back unassigned.
    """
    shares: list[list[int]] = [[] for _ in capacities]
    free = list(capacities)
    unassigned: list[int] = []
    n = len(capacities)
    for i, w in enumerate(plan_workers):
        for k in range(n):
            j = (i + k) % n
            if free[j] > 0:
                shares[j].append(w)
                free[j] -= 1
                break
        else:
            unassigned.append(w)
    return shares, unassigned


class _Conductor:
    """The master's side: share, measure clocks, start together, collect, write, quit."""

    def __init__(self, env: Environment, runner: MasterRunner) -> None:
        self.env = env
        self.runner = runner
        spec_path = os.environ.get(SPEC_ENV)
        out_path = os.environ.get(OUT_ENV)
        if not spec_path or not out_path:
            raise RuntimeError(f"the master needs {SPEC_ENV} and {OUT_ENV}")
        self.out_path = out_path
        with open(spec_path, encoding="utf-8") as f:
            self.spec: dict[str, Any] = json.load(f)
        self.links: dict[str, _Link] = {}
        self.pongs: dict[int, AsyncResult] = {}
        self.seq = 0
        self.started = False
        runner.register_message("lab_ready", self.on_ready)
        runner.register_message("lab_pong", self.on_pong)
        runner.register_message("lab_ops", self.on_ops)
        runner.register_message("lab_done", self.on_done)

    def on_ready(self, environment: Environment, msg: Message) -> None:
        if msg.node_id in self.links:
            self.links[msg.node_id].ready = True

    def on_pong(self, environment: Environment, msg: Message) -> None:
        waiting = self.pongs.get(int(msg.data["seq"]))
        if waiting is not None:
            waiting.set(int(msg.data["t"]))

    def on_ops(self, environment: Environment, msg: Message) -> None:
        if msg.node_id in self.links:
            self.links[msg.node_id].ops.extend(msg.data["ops"])

    def on_done(self, environment: Environment, msg: Message) -> None:
        if msg.node_id in self.links:
            self.links[msg.node_id].done = True

    def start(self) -> None:
        if not self.started:
            self.started = True
            gevent.spawn(self.conduct)

    def alive(self, link: _Link) -> bool:
        node = self.runner.clients.get(link.node_id)
        if node is None or node.state == STATE_MISSING:
            if not link.lost:
                logging.warning("worker %s (index %s) lost", link.node_id, link.index)
            link.lost = True
        return not link.lost

    def sync(self, link: _Link, into: list[list[int]]) -> None:
        for _ in range(SYNC_ROUNDS):
            if not self.alive(link):
                return
            self.seq += 1
            seq = self.seq
            waiting: AsyncResult = AsyncResult()
            self.pongs[seq] = waiting
            t0 = time.monotonic_ns()
            self.runner.send_message("lab_ping", {"seq": seq}, client_id=link.node_id)
            try:
                tw = waiting.get(timeout=PING_TIMEOUT_S)
            except gevent.Timeout:
                continue
            finally:
                self.pongs.pop(seq, None)
            into.append([t0, int(tw), time.monotonic_ns()])

    def wait_for(self, what: str, bound_s: float) -> None:
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            live = [link for link in self.links.values() if self.alive(link)]
            if all(getattr(link, what) for link in live):
                return
            gevent.sleep(0.02)

    def conduct(self) -> None:
        out: dict[str, Any] = {"error": None}
        try:
            out.update(self.run())
        except Exception as err:  # written for the driver, which reports it
            out["error"] = f"{type(err).__name__}: {err}"
        out["workers"] = [link.to_dict() for link in self.links.values()]
        tmp = f"{self.out_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, self.out_path)
        self.runner.quit()

    def run(self) -> dict[str, Any]:
        spec = self.spec
        bound_s = float(spec["run_timeout_s"]) + float(spec["op_timeout_s"])
        # Locust fires spawning_complete even when its wait for the workers' reports ran
        # out (seen on a loaded machine): wait, bounded, until they account for every user.
        wanted = int(spec["plan_workers"])
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            counts = [n.user_count for n in self.runner.clients.values()]
            if sum(counts) >= wanted:
                break
            gevent.sleep(0.05)
        nodes = sorted(
            self.runner.clients.values(), key=lambda n: self.runner.worker_indexes.get(n.id, 0)
        )
        for node in nodes:
            users = int(sum(node.user_classes_count.values()))
            link = _Link(node.id, self.runner.worker_indexes.get(node.id, 0), users)
            self.links[node.id] = link
        links = list(self.links.values())
        by_worker: dict[int, list[list[Any]]] = {}
        for row in spec["ops"]:
            by_worker.setdefault(int(row[1]), []).append(row)
        shares, unassigned = partition(
            list(range(int(spec["plan_workers"]))), [link.users for link in links]
        )
        for link, share in zip(links, shares, strict=True):
            link.plan_workers = share
            self.runner.send_message(
                "lab_share",
                {
                    "base_url": spec["base_url"],
                    "op_timeout_s": spec["op_timeout_s"],
                    "bound_s": bound_s,
                    "shares": [[w, by_worker.get(w, [])] for w in share],
                },
                client_id=link.node_id,
            )
        self.wait_for("ready", bound_s)
        for link in links:
            self.sync(link, link.sync_before)
        # Far enough ahead that every worker has its go before the instant: a few of
        # the slowest round trips, and at least the spec's lead.
        rtts = [s[2] - s[0] for link in links for s in link.sync_before]
        lead_ns = max(int(float(spec["lead_s"]) * 1e9), 20 * max(rtts, default=0))
        go_ns = time.monotonic_ns() + lead_ns
        for link in links:
            if not link.sync_before:
                continue
            offset = _offset(link.sync_before)
            self.runner.send_message("lab_go", {"start_at": go_ns + offset}, client_id=link.node_id)
        self.wait_for("done", lead_ns / 1e9 + bound_s)
        end_ns = time.monotonic_ns()
        # Belt and braces for the statistics: every reported op counted, or 5 s passed.
        reported = sum(len(link.ops) for link in links)
        counted_by = time.monotonic() + 5.0
        while self.runner.stats.total.num_requests < reported and time.monotonic() < counted_by:
            gevent.sleep(0.05)
        for link in links:
            if link.done:
                self.sync(link, link.sync_after)
        return {"go_ns": go_ns, "end_ns": end_ns, "unassigned": unassigned}


def _offset(samples: list[list[int]]) -> int:
    t0, tw, t1 = min(samples, key=lambda s: s[2] - s[0])
    return tw - (t0 + t1) // 2


_ROLE: dict[str, Any] = {}


def _on_init(environment: Environment, **kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _ROLE["master"] = _Conductor(environment, runner)
    elif isinstance(runner, WorkerRunner):
        _ROLE["worker"] = _Worker(environment, runner)


def _on_spawned(user_count: int, **kwargs: Any) -> None:
    conductor = _ROLE.get("master")
    if isinstance(conductor, _Conductor):
        conductor.start()


# Locust's EventHook.add_listener is untyped.
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.spawning_complete.add_listener(_on_spawned)  # type: ignore[no-untyped-call]


class PlanUser(User):
    """One plan worker's ops, run in order once the master's start instant comes."""

    wait_time = constant(0)

    def on_start(self) -> None:
        worker = _ROLE.get("worker")
        self.share: tuple[int, list[dict[str, Any]]] | None = None
        self.client: HttpClient | None = None
        if not isinstance(worker, _Worker):
            return
        worker.assigned.wait(worker.bound_s if worker.bound_s else 60.0)
        self.share = worker.take()
        if self.share is not None and worker.client is not None:
            self.client = worker.client
            # Each user opens its kept-alive connection before the start: the stampede
            # measures claims, not TCP handshakes. A client with ``ready`` (one connection
            # per thread or greenlet) and encodes its requests before the release.
            with contextlib.suppress(Exception):  # the first op meets the same trouble
                self.client.ready([Op(**row) for row in self.share[1]])
            worker.holders -= 1

    @task
    def run_share(self) -> None:
        worker = _ROLE.get("worker")
        if self.share is None or self.client is None or not isinstance(worker, _Worker):
            gevent.sleep(0.2)
            return
        _, rows = self.share
        self.share = None
        worker.wait_start()
        for row in rows:
            with worker.serial or contextlib.nullcontext():
                op = self.client.invoke(Op(**row))
            worker.record(op)
            ms = op.latency_ns / 1e6
            failure = (
                RuntimeError(op.message or op.result)
                if outcome_of(op.result) == "unknown"
                else None
            )
            self.environment.events.request.fire(
                request_type="HTTP",
                name=f"{op.kind}:{op.result}",
                response_time=ms,
                response_length=0,
                exception=failure,
                context={},
            )
        worker.busy -= 1
