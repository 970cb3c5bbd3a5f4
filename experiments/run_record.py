"""A run's record: its start (the seed drawn and printed, a prefix, the clock) and its Result.

A run of the results folder (a suite run, a Locust run) is named by ``new_run_id``.

Every experiment begins with ``start_run`` and ends with ``lab_result``, whose params
open with ``common_params`` (the database URL masked: params land in reports).
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from coupon_core.redact import redact_url
from experiments.history import History
from experiments.plans import draw_seed
from experiments.result import Result, Verdict

__all__ = [
    "RunStart",
    "announce",
    "common_params",
    "lab_result",
    "new_run_id",
    "run_prefix",
    "start_run",
]


def new_run_id(started_at: datetime) -> str:
    """A results folder's name for a run begun at ``started_at``: ``20261129T081500Z-ab12``.

    Its start time first, so runs sort by name (``compare.list_runs`` reads them so).
    """
    return f"{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_prefix(scenario: str) -> str:
    """A coupon-name prefix unique to one run: ``<scenario>-<12 hex>``."""
    return f"{scenario}-{uuid.uuid4().hex[:12]}"


def announce(scenario: str, seed: int, layer: str, strategy: str) -> None:
    """Print the seed: one line, so any run can be replayed."""
    print(f"[{scenario}] seed={seed} layer={layer} strategy={strategy}", flush=True)


class RunStart(NamedTuple):
    """What a run begins with: its seed (drawn, printed), its prefix, when it started."""

    seed: int
    prefix: str
    #: ISO time, to the second, for the Result.
    started_at: str
    #: ``time.monotonic()`` at the start, for the Result's duration.
    t0: float


def start_run(scenario: str, seed: int | None, layer: str, strategy: str) -> RunStart:
    """Draw the seed and print it (``announce``), and give the run its prefix and start."""
    drawn = draw_seed(seed)
    announce(scenario, drawn, layer, strategy)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    return RunStart(drawn, run_prefix(scenario), started_at, time.monotonic())


def _masked(url: str | None) -> str | None:
    # Params land in reports: never a password.
    return None if url is None else redact_url(url)


def common_params(
    *,
    seed: int,
    layer: str,
    strategy: str,
    database_url: str | None,
    op_timeout_s: float,
    run_timeout_s: float,
) -> dict[str, Any]:
    return {
        "seed": seed,
        "layer": layer,
        "strategy": strategy,
        "database_url": _masked(database_url),
        "op_timeout_s": op_timeout_s,
        "run_timeout_s": run_timeout_s,
    }


def lab_result(
    scenario: str,
    *,
    seed: int,
    layer: str,
    strategy: str,
    database_url: str | None,
    op_timeout_s: float,
    run_timeout_s: float,
    params: dict[str, Any],
    history: History,
    verdicts: list[Verdict],
    summary: dict[str, Any],
    started_at: str,
    t0: float,
) -> Result:
    """A finished run's Result: ``common_params`` first in its params, then ``params``;
    its duration counted from ``t0`` (``time.monotonic()`` when the run began)."""
    return Result(
        scenario=scenario,
        seed=seed,
        layer=layer,
        strategy=strategy,
        params={
            **common_params(
                seed=seed,
                layer=layer,
                strategy=strategy,
                database_url=database_url,
                op_timeout_s=op_timeout_s,
                run_timeout_s=run_timeout_s,
            ),
            **params,
        },
        history=history,
        verdicts=verdicts,
        summary=summary,
        started_at=started_at,
        duration_s=time.monotonic() - t0,
    )
