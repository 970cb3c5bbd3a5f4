"""Try to reproduce PostgreSQL 18.6's XX000 "new multixact has more than one updating member".

Seen under SERIALIZABLE with 64 workers (the service's ``serializable`` claim, and
pgbench). This script reduces it on a fresh embedded cluster: ``--workers`` threads,
each with its own connection, run one workload in a loop for ``--seconds`` and count
every SQLSTATE they get. Workloads, from the service's claim down:

``claim``       the ``serializable`` strategy's four statements on one hot coupon
                (SELECT the coupon, SELECT a prior claim, INSERT the claim, UPDATE stock)
``fk_update``   INSERT a child row (its FK takes FOR KEY SHARE on the parent), then
                UPDATE the parent's non-key column (FOR NO KEY UPDATE): two lockers of
                one parent tuple in one transaction, the usual way to a multixact
``update``      only the UPDATE of the parent

    .venv/bin/python scripts/multixact_repro.py [--workers 64] [--seconds 20]
        [--workload claim fk_update update] [--isolation serializable]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter

import psycopg

from coupon_core import EmbeddedPostgres, apply_schema

SETUP = """
DROP TABLE IF EXISTS mx_child; DROP TABLE IF EXISTS mx_parent;
CREATE TABLE mx_parent (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE mx_child (id SERIAL PRIMARY KEY, parent INTEGER NOT NULL REFERENCES mx_parent(id));
INSERT INTO mx_parent (id) VALUES (1);
DELETE FROM claims WHERE coupon_name = 'mx-hot'; DELETE FROM coupons WHERE name = 'mx-hot';
INSERT INTO coupons (name, amount, remaining_amount) VALUES ('mx-hot', 2000000000, 2000000000);
"""


def _txn(conn: psycopg.Connection[tuple[object, ...]], workload: str, i: int, n: int) -> None:
    if workload == "claim":
        user = f"w{i}-{n}"
        conn.execute("SELECT remaining_amount FROM coupons WHERE name = 'mx-hot'").fetchone()
        conn.execute(
            "SELECT 1 FROM claims WHERE user_id = %s AND coupon_name = 'mx-hot'", (user,)
        ).fetchone()
        conn.execute("INSERT INTO claims (user_id, coupon_name) VALUES (%s, 'mx-hot')", (user,))
        conn.execute(
            "UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = 'mx-hot'"
        )
    elif workload == "fk_update":
        conn.execute("INSERT INTO mx_child (parent) VALUES (1)")
        conn.execute("UPDATE mx_parent SET n = n + 1 WHERE id = 1")
    else:
        conn.execute("UPDATE mx_parent SET n = n + 1 WHERE id = 1")


def run(url: str, workload: str, workers: int, seconds: float, isolation: str) -> Counter[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(workers)
    deadline = 0.0
    messages: dict[str, str] = {}

    def worker(i: int) -> None:
        nonlocal deadline
        local: Counter[str] = Counter()
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            if i == 0:
                deadline = time.monotonic() + seconds
            while not deadline:
                time.sleep(0.001)
            n = 0
            while time.monotonic() < deadline:
                n += 1
                try:
                    with conn.transaction():
                        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
                        _txn(conn, workload, i, n)
                    local["ok"] += 1
                except psycopg.Error as err:
                    code = err.sqlstate or type(err).__name__
                    local[code] += 1
                    if code not in ("40001", "40P01"):
                        with lock:
                            messages.setdefault(code, str(err).splitlines()[0])
        with lock:
            codes.update(local)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for code, text in messages.items():
        codes[f"{code}: {text}"] = codes.pop(code)
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workload", nargs="+", default=["claim", "fk_update", "update"])
    parser.add_argument("--isolation", default="serializable")
    args = parser.parse_args(argv)
    db = EmbeddedPostgres.create(max_connections=args.workers + 20)
    db.start()
    try:
        with psycopg.connect(db.url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        print(
            f"PostgreSQL {row[0] if row else '?'}; {args.workers} workers, {args.seconds:g} s each"
        )
        apply_schema(db.url)
        found = False
        for workload in args.workload:
            codes = run(db.url, workload, args.workers, args.seconds, args.isolation.upper())
            hit = sum(v for k, v in codes.items() if k.startswith("XX000"))
            found |= hit > 0
            print(f"{workload:10} {args.isolation:14} XX000={hit:<5} {dict(codes)}")
        print("reproduced" if found else "not reproduced")
        return 0 if found else 1
    finally:
        db.close()


if __name__ == "__main__":
    raise SystemExit(main())
