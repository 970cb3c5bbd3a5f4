"""Locust master and worker processes, started, bounded and reaped by the lab's process.

The lab never imports locust (it monkey-patches the standard library with gevent):
it runs ``python -m locust -f <locustfile>`` as separate processes. ``run_swarm``
starts a master and N local workers for a plan, waits for the master's file within a
bound derived from the run's own bounds, stops whatever is still running, and
returns what came back; ``join_swarm`` starts workers that join a master elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.errors import SwarmError, UsageError
from experiments.locust._merge import WorkerReport
from experiments.locust._protocol import OUT_ENV, SPEC_ENV, USER_CLASS, op_row
from experiments.plans import Plan

__all__ = [
    "LOCUSTFILE",
    "SwarmError",
    "SwarmRun",
    "join_swarm",
    "parse_hostport",
    "run_swarm",
]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: Start-up of a Locust process (imports, gevent, ZeroMQ) and the users' spawn: generous.
STARTUP_BOUND_S = 60.0
#: How long a process gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0


@dataclass
class SwarmRun:
    """What the master wrote, and where Locust's own reports are."""

    reports: list[WorkerReport]
    go_ns: int
    end_ns: int
    unassigned: list[int]
    out_dir: Path
    stats: list[dict[str, Any]] = field(default_factory=list)
    html: Path | None = None
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    error: str | None = None


def parse_hostport(text: str, *, default_port: int = 5557) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``) as a pair; a ``UsageError`` with a clear message otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    if not host:
        raise UsageError(f"{text!r}: expected HOST:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The plan and the URL travel in the spec file; the database is the lab's business.
    env.pop("DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _processes() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        end = time.monotonic() + STOP_GRACE_S
        for p in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, end - time.monotonic()))
            if p.poll() is None:
                p.kill()
                p.wait()


def _start(
    procs: dict[str, subprocess.Popen[bytes]],
    name: str,
    argv: list[str],
    log: Path,
    env: dict[str, str],
) -> None:
    with log.open("wb") as f:
        procs[name] = subprocess.Popen(
            argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _stats(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _loglevel() -> str:
    return os.environ.get("COUPON_CHAOS_LOCUST_LOGLEVEL", "WARNING")


def _worker_argv(host: str, port: int) -> list[str]:
    # WARNING: at INFO a worker logs a line per request (httpx) and ships them to the master.
    return _locust(
        "--worker", "--master-host", host, "--master-port", str(port), "--loglevel", _loglevel()
    )


def _master_argv(
    host: str,
    port: int,
    expected: int,
    users: int,
    bound_s: float,
    op_timeout_s: float,
    out_dir: Path,
) -> list[str]:
    return _locust(
        "--master",
        "--headless",
        "--master-bind-host",
        host,
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(expected),
        "--expect-workers-max-wait",
        str(int(STARTUP_BOUND_S)),
        "-u",
        str(users),
        "-r",
        str(max(users, 1)),
        "-t",
        f"{int(bound_s)}s",
        "--stop-timeout",
        str(int(op_timeout_s) + 1),
        "--html",
        str(out_dir / "locust-report.html"),
        "--json-file",
        str(out_dir / "locust-stats"),
        "--only-summary",
        "--loglevel",
        _loglevel(),
        USER_CLASS,
    )


def _attempt(
    master_argv: list[str],
    master_env: dict[str, str],
    host: str,
    port: int,
    processes: int,
    worker_env: Mapping[int, Mapping[str, str]] | None,
    out_dir: Path,
    bound_s: float,
) -> dict[str, int | None]:
    """One start of the master and the local workers, waited for; their exit codes."""
    with _processes() as procs:
        _start(procs, "master", master_argv, out_dir / "locust-master.log", master_env)
        for i in range(processes):
            extra = dict((worker_env or {}).get(i, {}))
            argv = _worker_argv(host, port)
            _start(procs, f"worker-{i}", argv, out_dir / f"locust-worker-{i}.log", _env(extra))
        deadline = time.monotonic() + bound_s
        master = procs["master"]
        while master.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # Workers leave when the master quits; give them the grace, then stop them.
        end = time.monotonic() + STOP_GRACE_S
        for p in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, end - time.monotonic()))
        return {name: p.poll() for name, p in procs.items()}


def run_swarm(
    plan: Plan,
    base_url: str,
    out_dir: Path,
    *,
    processes: int = 2,
    master_bind: str | None = None,
    expect_workers: int | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    lead_s: float = 0.5,
    worker_env: Mapping[int, Mapping[str, str]] | None = None,
) -> SwarmRun:
    """Run ``plan`` against ``base_url`` from a Locust master and ``processes`` local workers.

    ``master_bind`` (``HOST:PORT``, loopback and a free port by default) is where the
    master listens; ``expect_workers`` counts the workers to wait for (the local ones
    plus any that join from elsewhere with ``join_swarm``). ``worker_env`` adds
    variables to local worker ``i`` (fault injection for tests). Everything started
    is stopped before this returns.
    """
    if processes < 0 or (expect_workers or processes) < 1:
        raise SwarmError("a Locust run needs at least one worker")
    expected = expect_workers if expect_workers is not None else processes
    if expected < processes:
        raise SwarmError(f"expect_workers={expected} is fewer than the {processes} local workers")
    host, given_port = parse_hostport(master_bind or "127.0.0.1:0")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / "locust-spec.json"
    out_path = out_dir / "locust-out.json"
    out_path.unlink(missing_ok=True)
    spec = {
        "base_url": base_url,
        "op_timeout_s": op_timeout_s,
        "run_timeout_s": run_timeout_s,
        "lead_s": lead_s,
        "plan_workers": plan.workers,
        "ops": [op_row(o.op_id, o.worker, o.kind, o.coupon, o.user, o.amount) for o in plan.ops],
    }
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    # The master's own bound (Locust's --run-time) and ours: start-up, the run with
    # its in-flight ops, the clock round trips and writing, all generous.
    bound_s = STARTUP_BOUND_S + lead_s + 2 * (run_timeout_s + op_timeout_s) + 30.0
    master_env = _env({SPEC_ENV: str(spec_path), OUT_ENV: str(out_path)})
    codes: dict[str, int | None] = {}
    # A free port is picked, released, then bound by the master: another process may
    # take it in between (seen with runs side by side). Then a new port, a few times.
    for _ in range(1 if given_port else 3):
        port = given_port or _free_port(host)
        master_argv = _master_argv(
            host, port, expected, plan.workers, bound_s, op_timeout_s, out_dir
        )
        codes = _attempt(
            master_argv, master_env, host, port, processes, worker_env, out_dir, bound_s
        )
        if out_path.exists() or "Socket bind failure" not in _tail(out_dir / "locust-master.log"):
            break
    # The spec holds the target's URL as given: it served the master, it is not a record.
    spec_path.unlink(missing_ok=True)
    if not out_path.exists():
        why = (
            "the master did not finish within its bound"
            if codes.get("master") is None
            else (f"the master exited {codes.get('master')} without writing its results")
        )
        raise SwarmError(f"{why}: {_tail(out_dir / 'locust-master.log')}")
    data = json.loads(out_path.read_text(encoding="utf-8"))
    html = out_dir / "locust-report.html"
    return SwarmRun(
        reports=[WorkerReport.from_dict(w) for w in data.get("workers", [])],
        go_ns=int(data.get("go_ns") or 0),
        end_ns=int(data.get("end_ns") or 0),
        unassigned=[int(w) for w in data.get("unassigned", [])],
        out_dir=out_dir,
        stats=_stats(out_dir / "locust-stats.json"),
        html=html if html.exists() else None,
        exit_codes=codes,
        error=data.get("error"),
    )


def join_swarm(
    master_host: str,
    *,
    processes: int = 2,
    log_dir: Path,
    timeout_s: float = 3600.0,
    worker_env: Mapping[int, Mapping[str, str]] | None = None,
) -> dict[str, int | None]:
    """Start ``processes`` workers that join the master at ``master_host`` (``HOST:PORT``).

    Returns when they have all exited (the master's quit ends them) or ``timeout_s``
    passed (then they are stopped); the exit code of each.
    """
    if processes < 1:
        raise SwarmError("joining a master needs at least one worker process")
    host, port = parse_hostport(master_host)
    log_dir.mkdir(parents=True, exist_ok=True)
    with _processes() as procs:
        for i in range(processes):
            argv = _worker_argv(host, port)
            extra = dict((worker_env or {}).get(i, {}))
            _start(procs, f"worker-{i}", argv, log_dir / f"locust-worker-{i}.log", _env(extra))
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return {name: p.poll() for name, p in procs.items()}


def worker_logs(out_dir: Path) -> Sequence[Path]:
    return sorted(out_dir.glob("locust-*.log"))
