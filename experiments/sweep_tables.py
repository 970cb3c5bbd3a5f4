"""A sweep's tidy tables on disk: ``runs.csv``, ``ops.csv``, ``checks.csv`` and ``sweep.json``.

One row per run, per operation and per (run, check), plain CSV a user loads with
``pandas.read_csv`` in a notebook of their own (``load`` does just that, and reads
back what the sweep was asked to do from ``sweep.json``). CSV rather than Parquet:
no extra dependency, readable by any tool, and a 20-seed sweep of two stampedes is
a few MB.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.sweep import Sweep

__all__ = ["FILES", "load", "load_or_run", "save"]

#: The tables, by file name.
FILES: tuple[str, ...] = ("runs.csv", "ops.csv", "checks.csv")


def save(sweep: Sweep, folder: Path | str) -> Path:
    """Write the tables and ``sweep.json`` into ``folder`` (created); return the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sweep.runs.to_csv(out / "runs.csv", index=False)
    sweep.ops.to_csv(out / "ops.csv", index=False)
    sweep.checks.to_csv(out / "checks.csv", index=False)
    (out / "sweep.json").write_text(
        json.dumps(sweep.meta, indent=2, default=str, ensure_ascii=False), encoding="utf-8"
    )
    return out


def load(folder: Path | str) -> Sweep:
    """Read a folder ``save`` wrote; a missing table is a clear ``FileNotFoundError``."""
    import pandas as pd

    src = Path(folder)
    missing = [f for f in (*FILES, "sweep.json") if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{src} is not a sweep's folder: no {', '.join(missing)}")

    def read(name: str) -> pd.DataFrame:
        try:
            return pd.read_csv(src / name)
        except pd.errors.EmptyDataError:  # a sweep whose runs all crashed has no ops
            return pd.DataFrame()

    meta = json.loads((src / "sweep.json").read_text(encoding="utf-8"))
    return Sweep(runs=read("runs.csv"), ops=read("ops.csv"), checks=read("checks.csv"), meta=meta)


def load_or_run(
    folder: Path | str | None, names: Sequence[str], **sweep_args: Any
) -> tuple[Sweep, Path]:
    """The sweep saved in ``folder``; or, with None, run one (``run_sweep(names, ...)``),
    save it in a new temporary folder, and return it with that folder."""
    if folder is not None:
        return load(folder), Path(folder)
    import tempfile

    from experiments.sweep import run_sweep

    sweep = run_sweep(names, **sweep_args)
    return sweep, save(sweep, tempfile.mkdtemp(prefix="coupon-sweep-"))
