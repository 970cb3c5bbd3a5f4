"""Past runs and their comparison: what changed between two ``summary.json`` files.

A run is a folder of the results folder holding ``summary.json`` (``experiments.suite``
writes it last). Two runs compare per scenario and layer: the verdict, the outcome
counts that differ, the latency quantiles and the throughput, as a terminal table
(``table``) and as one self-contained HTML page with side-by-side charts
(``write_html``). This module reads only those files: it never imports the suite.

Each scenario carries its ``status`` (pass, FAIL, unknown, no_experiment, skipped,
interrupted) and so does the run; a summary written before statuses existed is read
by its ``passed`` and ``skipped`` fields.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import figures
from experiments.errors import RunNotFound

__all__ = [
    "Comparison",
    "Row",
    "RunInfo",
    "RunNotFound",
    "compare_runs",
    "find_run",
    "job_status",
    "list_runs",
    "markdown_verdicts",
    "previous_run",
    "run_label",
    "run_status",
    "table",
    "write_html",
]

QUANTILES: tuple[str, ...] = ("p50_ms", "p90_ms", "p99_ms")


#: Statuses that count as not passed (a run that tested nothing is never a pass).
NOT_PASSED: tuple[str, ...] = ("FAIL", "unknown", "no_experiment")


def job_status(job: dict[str, Any] | None) -> str:
    """A scenario's status in a summary; ``-`` for a side that lacks it."""
    if job is None:
        return "-"
    status = job.get("status")
    if isinstance(status, str):
        return status
    if job.get("skipped"):
        return "skipped"
    return "pass" if job.get("passed") else "FAIL"


def run_status(summary: dict[str, Any]) -> str:
    """A run's status in its summary (older summaries: from its scenarios)."""
    status = summary.get("status")
    if isinstance(status, str):
        return status
    statuses = [job_status(j) for j in summary.get("scenarios", [])]
    ran = [s for s in statuses if s != "skipped"]
    if not ran:
        return "skipped"
    return next((s for s in (*NOT_PASSED, "pass") if s in ran), "FAIL")


def checks_skipped(summary: dict[str, Any]) -> int:
    """Checks skipped in the scenarios of ``summary`` that ran."""
    jobs = summary.get("scenarios", [])
    return sum(
        int(j.get("checks_skipped") or sum(1 for c in j.get("checks", []) if c.get("skipped")))
        for j in jobs
        if job_status(j) != "skipped"
    )


def run_label(summary: dict[str, Any]) -> str:
    """A run's status as its index badge reads it (``figures.run_label``): a pass that
    skipped scenarios or checks says how many (``7 passed, 45 checks skipped``)."""
    statuses = [job_status(j) for j in summary.get("scenarios", [])]
    return figures.run_label(
        run_status(summary),
        statuses.count("pass"),
        statuses.count("skipped"),
        checks_skipped(summary),
    )


@dataclass(frozen=True)
class RunInfo:
    """One past run, as ``coupon-chaos runs`` lists it."""

    run_id: str
    path: Path
    started_at: str
    seed: int | None
    passed: int
    #: Scenarios that failed, were unknown, or were no experiment (never skipped ones).
    failed: int
    duration_s: float | None
    complete: bool
    skipped: int = 0
    #: pass / FAIL / unknown / no_experiment / skipped / interrupted; "" when incomplete.
    status: str = ""
    #: The status as the run's index reads it (``run_label``); "" when incomplete.
    label: str = ""
    #: Checks skipped in the scenarios that ran (a target run without its database).
    checks_skipped: int = 0

    @property
    def shown_status(self) -> str:
        """The status column of ``runs``: ``partial`` for a pass that skipped anything
        (scenarios or checks), as the run's index badge is not green for it."""
        return figures.run_badge(self.status, self.skipped, self.checks_skipped).replace(
            "fail", "FAIL"
        )

    @classmethod
    def read(cls, path: Path) -> RunInfo:
        try:
            summary = load_summary(path)
        except RunNotFound:
            return cls(path.name, path, "", None, 0, 0, None, complete=False)
        statuses = [job_status(j) for j in summary.get("scenarios", [])]
        return cls(
            run_id=str(summary.get("run_id", path.name)),
            path=path,
            started_at=str(summary.get("started_at", "")),
            seed=summary.get("seed"),
            passed=statuses.count("pass"),
            failed=sum(s in NOT_PASSED for s in statuses),
            duration_s=summary.get("duration_s"),
            complete=True,
            skipped=statuses.count("skipped"),
            status=run_status(summary),
            label=run_label(summary),
            checks_skipped=checks_skipped(summary),
        )


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunNotFound(f"{run_dir}: no readable summary.json ({type(err).__name__})") from None
    return loaded


def _is_run_dir(path: Path) -> bool:
    # A suite run's id starts with its UTC time, 20261129T081500Z-ab12; bench-* are not runs.
    return path.is_dir() and not path.is_symlink() and path.name[:8].isdigit()


def list_runs(results: Path) -> list[RunInfo]:
    """The runs of ``results``, oldest first (ids begin with their start time)."""
    if not results.is_dir():
        return []
    return [
        RunInfo.read(p) for p in sorted(results.iterdir(), key=lambda p: p.name) if _is_run_dir(p)
    ]


def find_run(ref: str, results: Path) -> Path:
    """The folder of ``ref``: ``latest``, ``previous``, a run id in ``results``, or a folder."""
    runs = [r for r in list_runs(results) if r.complete]
    if ref in ("latest", "previous"):
        index = -1 if ref == "latest" else -2
        if len(runs) < -index:
            raise RunNotFound(f"no {ref} run in {results}")
        return runs[index].path
    for candidate in (results / ref, Path(ref)):
        if (candidate / "summary.json").is_file():
            return candidate.resolve()
    raise RunNotFound(f"no run {ref!r} (not a run id in {results}, nor a run folder)")


def previous_run(results: Path, run_id: str) -> Path | None:
    """The newest complete run of ``results`` before ``run_id``; None for the first."""
    earlier = [r for r in list_runs(results) if r.complete and r.path.name < run_id]
    return earlier[-1].path if earlier else None


# -- comparing ----------------------------------------------------------------------------


@dataclass
class Row:
    """One scenario on one layer in both runs (a side is None when that run lacks it)."""

    scenario: str
    layer: str
    a: dict[str, Any] | None
    b: dict[str, Any] | None

    @property
    def key(self) -> str:
        return f"{self.scenario} [{self.layer}]"

    def verdict(self, side: dict[str, Any] | None) -> str:
        """The side's status (``-`` when that run lacks the scenario)."""
        return job_status(side)

    @property
    def verdict_changed(self) -> bool:
        """Both runs ran it and judged it differently (a side missing is not a change)."""
        return (
            self.a is not None
            and self.b is not None
            and self.verdict(self.a) != self.verdict(self.b)
        )

    def outcome_diffs(self) -> list[tuple[str, int, int]]:
        """(``kind result``, count in A, count in B) for each count that differs."""
        if self.a is None or self.b is None:
            return []
        a = _flat_outcomes(self.a)
        b = _flat_outcomes(self.b)
        return [
            (k, a.get(k, 0), b.get(k, 0))
            for k in sorted(a.keys() | b.keys())
            if a.get(k, 0) != b.get(k, 0)
        ]

    def check_changes(self) -> list[tuple[str, str, str]]:
        """(check, verdict in A, verdict in B) for each named check judged differently.

        The notebook's assert cells (``cell [n] ...``) repeat the checks they assert on.
        """

        def verdicts(side: dict[str, Any] | None) -> dict[str, str]:
            return {
                str(c.get("name")): _check_label(c)
                for c in (side or {}).get("checks", [])
                if not str(c.get("name")).startswith("cell [")
            }

        if self.a is None or self.b is None:
            return []
        a, b = verdicts(self.a), verdicts(self.b)
        return [
            (name, a.get(name, "-"), b.get(name, "-"))
            for name in [*a, *(n for n in b if n not in a)]
            if a.get(name, "-") != b.get(name, "-")
        ]

    def param_diffs(self) -> list[tuple[str, str, str]]:
        """(parameter, value in A, value in B) for each the two runs set differently.

        A run's figures compare like for like only under the same parameters: flash_sale
        with 50 users against one with 200 is another experiment, not a regression.
        """
        if self.a is None or self.b is None:
            return []
        a, b = _params(self.a), _params(self.b)
        return [
            (k, _shown(a.get(k, _UNSET)), _shown(b.get(k, _UNSET)))
            for k in [*a, *(k for k in b if k not in a)]
            if a.get(k, _UNSET) != b.get(k, _UNSET)
        ]

    def latency(self, side: dict[str, Any] | None) -> dict[str, float | None]:
        lat = ((side or {}).get("figures") or {}).get("latency") or {}
        return {q: lat.get(q) for q in QUANTILES}

    def throughput(self, side: dict[str, Any] | None) -> float | None:
        value = ((side or {}).get("figures") or {}).get("throughput_ops_s")
        return float(value) if isinstance(value, int | float) else None


#: Parameters that say where a run ran, not what it did: never a difference of plan.
_NOT_PLAN = frozenset({"database_url", "out_dir", "cleanup"})
_UNSET = object()


def _params(side: dict[str, Any]) -> dict[str, Any]:
    """A scenario's parameters: its Result's (read from the run folder), ``-p`` over them."""
    found = dict(side.get("_params") or {})
    found.update(side.get("parameters") or {})
    for key in ("seed", "strategy"):
        if side.get(key) is not None:
            found[key] = side[key]
    return {k: v for k, v in found.items() if k not in _NOT_PLAN}


def _shown(value: Any) -> str:
    return "(not set)" if value is _UNSET else json.dumps(value, default=str)


def _result_params(run_dir: Path, job: dict[str, Any]) -> dict[str, Any]:
    """The params a scenario's Result recorded (``data/<name>-<layer>/*.result.json``)."""
    folder = run_dir / "data" / f"{job.get('name')}-{job.get('layer')}"
    for path in sorted(folder.glob("*.result.json")):
        try:
            params = json.loads(path.read_text(encoding="utf-8")).get("params")
        except (OSError, ValueError):
            continue
        if isinstance(params, dict):
            return params
    return {}


def _check_label(check: dict[str, Any]) -> str:
    if check.get("skipped"):
        return "skipped"
    return {True: "pass", False: "FAIL"}.get(check.get("passed"), "unknown")  # type: ignore[arg-type]


def _flat_outcomes(side: dict[str, Any] | None) -> dict[str, int]:
    outcomes = (side or {}).get("outcomes") or {}
    return {f"{kind} {result}": int(n) for kind, by in outcomes.items() for result, n in by.items()}


@dataclass
class Comparison:
    """Run A (before) against run B (after)."""

    a_id: str
    b_id: str
    a_path: Path
    b_path: Path
    rows: list[Row] = field(default_factory=list)
    #: Each run's status (``interrupted`` for one stopped by a signal).
    a_status: str = ""
    b_status: str = ""

    @property
    def changed(self) -> list[Row]:
        return [r for r in self.rows if r.verdict_changed]

    @property
    def only_a(self) -> list[Row]:
        return [r for r in self.rows if r.b is None]

    @property
    def only_b(self) -> list[Row]:
        return [r for r in self.rows if r.a is None]

    @property
    def both(self) -> list[Row]:
        return [r for r in self.rows if r.a is not None and r.b is not None]

    @property
    def params_differ(self) -> list[Row]:
        """Rows whose two runs had different parameters (seed, strategy, ``-p``, defaults)."""
        return [r for r in self.both if r.param_diffs()]

    def headline(self) -> str:
        """The comparison's counts, one sentence: the console and the page both print it."""
        said = [f"{len(self.changed)} of {len(self.both)} verdicts changed (scenarios run in both)"]
        if self.only_a or self.only_b:
            said.append(f"{len(self.only_a)} only in A, {len(self.only_b)} only in B")
        n_diffs = sum(len(r.outcome_diffs()) for r in self.rows)
        said.append(f"{n_diffs} outcome counts differ")
        if self.params_differ:
            said.append(
                f"parameters differ in {len(self.params_differ)}: "
                "their figures are not like for like"
            )
        return "; ".join(said)


def compare_runs(a: Path, b: Path) -> Comparison:
    """Compare the runs in folders ``a`` and ``b`` (each with its ``summary.json``)."""
    sa, sb = load_summary(a), load_summary(b)
    ja = {
        (j["name"], j["layer"]): {**j, "_params": _result_params(a, j)}
        for j in sa.get("scenarios", [])
    }
    jb = {
        (j["name"], j["layer"]): {**j, "_params": _result_params(b, j)}
        for j in sb.get("scenarios", [])
    }
    keys = list(ja) + [k for k in jb if k not in ja]
    rows = [Row(name, layer, ja.get((name, layer)), jb.get((name, layer))) for name, layer in keys]
    return Comparison(
        str(sa.get("run_id", a.name)),
        str(sb.get("run_id", b.name)),
        a,
        b,
        rows,
        a_status=run_status(sa),
        b_status=run_status(sb),
    )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _shift(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return ""
    return f"{(b - a) / a * 100:+.0f}%"


def _pair(a: float | None, b: float | None, digits: int = 1) -> str:
    shift = _shift(a, b)
    return f"{_num(a, digits)} -> {_num(b, digits)}" + (f" ({shift})" if shift else "")


def table(cmp: Comparison) -> str:
    """The comparison as plain text: verdicts, then differing counts, then figures."""
    lines = [
        f"A {cmp.a_id}  ->  B {cmp.b_id}",
        f"run status: {cmp.a_status} -> {cmp.b_status}",
        cmp.headline(),
        "",
    ]
    both = cmp.both
    if cmp.params_differ:
        lines.append(f"parameters that differ: {len(cmp.params_differ)} of {len(both)}")
        for row in cmp.params_differ:
            for name, va, vb in row.param_diffs():
                lines.append(f"  {row.key:34} {name:26} {va} -> {vb}")
        lines.append("")
    lines.append(f"verdicts changed: {len(cmp.changed)} of {len(both)} run in both")
    for row in cmp.changed:
        lines.append(f"  {row.key:34} {row.verdict(row.a)} -> {row.verdict(row.b)}")
        for name, va, vb in row.check_changes():
            lines.append(f"      {name:30} {va} -> {vb}")
    for label, rows in (("only in A", cmp.only_a), ("only in B", cmp.only_b)):
        if rows:
            lines.append(f"{label}: {', '.join(r.key for r in rows)}")
    diffs = [(row, d) for row in cmp.rows for d in row.outcome_diffs()]
    lines += ["", f"outcome counts that differ: {len(diffs)}"]
    for row, (kind, na, nb) in diffs:
        lines.append(f"  {row.key:34} {kind:26} {na:>6} -> {nb}")
    lines += ["", "latency of the load ops (ms) and throughput (ops/s), A -> B"]
    head = ["scenario [layer]", "verdict", *(q.removesuffix("_ms") for q in QUANTILES), "ops/s"]
    table_rows = [head]
    for row in both:
        la, lb = row.latency(row.a), row.latency(row.b)
        table_rows.append(
            [
                row.key,
                f"{row.verdict(row.a)} -> {row.verdict(row.b)}",
                *(_pair(la[q], lb[q]) for q in QUANTILES),
                _pair(row.throughput(row.a), row.throughput(row.b), 0),
            ]
        )
    widths = [max(len(r[i]) for r in table_rows) for i in range(len(head))]
    for r in table_rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def markdown_verdicts(run_dir: Path) -> str:
    """One run's verdict table in Markdown (for ``$GITHUB_STEP_SUMMARY``)."""
    summary = load_summary(run_dir)
    jobs = summary.get("scenarios", [])
    statuses = [job_status(j) for j in jobs]
    passed = statuses.count("pass")
    others = "".join(
        f", {statuses.count(s)} {s.replace('_', ' ')}"
        for s in ("skipped", "no_experiment", "unknown", "interrupted")
        if statuses.count(s)
    )
    stopped = " (interrupted)" if run_status(summary) == "interrupted" else ""
    lines = [
        f"### coupon chaos lab: {passed} of {len(jobs)} passed{others}{stopped} "
        f"(run {summary.get('run_id')}, seed {summary.get('seed')})",
        "",
        "| verdict | scenario | layer | checks | seed | failed checks |",
        "|---|---|---|---|---|---|",
    ]
    for job in jobs:
        checks = job.get("checks", [])
        ok = sum(1 for c in checks if c.get("passed") is True)
        failing = [
            str(c.get("name"))
            for c in checks
            if c.get("passed") is not True and not c.get("skipped")
        ]
        # The assert cells repeat the named checks: name those, count the cells.
        named = [n.replace("|", "\\|") for n in failing if not n.startswith("cell [")]
        cells = len(failing) - len(named)
        failed = "; ".join(named) + (f" ({cells} assert cells)" if cells else "")
        status = job_status(job)
        verdict = status if status in ("pass", "skipped") else f"**{status}**"
        lines.append(
            f"| {verdict} | {job.get('name')} | {job.get('layer')} | {ok}/{len(checks)} "
            f"| {job.get('seed')} | {failed} |"
        )
    return "\n".join(lines) + "\n"


# -- the page -----------------------------------------------------------------------------


def _chart(row: Row, a_id: str, b_id: str) -> str:
    """Outcome counts and latency quantiles of both runs, side by side; a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.report import to_data_uri

    oa, ob = _flat_outcomes(row.a), _flat_outcomes(row.b)
    kinds = sorted(oa.keys() | ob.keys())
    la, lb = row.latency(row.a), row.latency(row.b)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 2.8))
    width = 0.4
    xs = range(len(kinds))
    left.bar([x - width / 2 for x in xs], [oa.get(k, 0) for k in kinds], width, label=f"A {a_id}")
    left.bar([x + width / 2 for x in xs], [ob.get(k, 0) for k in kinds], width, label=f"B {b_id}")
    left.set_xticks(list(xs), kinds, rotation=20, ha="right", fontsize=7)
    left.set_title("outcomes", fontsize=9)
    left.legend(fontsize=7)
    qs = range(len(QUANTILES))
    right.bar([x - width / 2 for x in qs], [la[q] or 0 for q in QUANTILES], width, label="A")
    right.bar([x + width / 2 for x in qs], [lb[q] or 0 for q in QUANTILES], width, label="B")
    right.set_xticks(list(qs), [q.removesuffix("_ms") for q in QUANTILES], fontsize=8)
    right.set_title("latency (ms)", fontsize=9)
    fig.tight_layout()
    uri = to_data_uri(fig, dpi=80)
    plt.close(fig)
    return uri


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #1f2328; font-size: 15px; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 13px; color: #59636e; border-bottom: 2px solid #d1d9e0; }
td, th { padding: .4em .6em; vertical-align: top; }
tbody tr { border-bottom: 1px solid #d1d9e0; }
tr.changed { background: #fff8c5; }
.params { background: #fff8c5; padding: .3em .6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
.unknown { color: #9a6700; font-weight: bold; } .no_experiment { color: #8250df; font-weight: bold; }
.skipped, .interrupted { color: #57606a; font-weight: bold; }
img { width: 640px; height: auto; display: block; }
"""


def write_html(cmp: Comparison, path: Path) -> Path:
    """Write the comparison as one self-contained page (charts as data URIs)."""
    esc = html.escape

    def link(run: Path) -> str:
        return esc(os.path.relpath(run / "index.html", path.parent))

    def verdict(row: Row, side: dict[str, Any] | None) -> str:
        text = row.verdict(side)
        return f'<span class="{esc(text.lower())}">{esc(text)}</span>'

    body = []
    for row in cmp.rows:
        la, lb = row.latency(row.a), row.latency(row.b)
        diffs = "".join(f"<li>{esc(k)}: {na} &rarr; {nb}</li>" for k, na, nb in row.outcome_diffs())
        diffs += "".join(
            f"<li>check <b>{esc(k)}</b>: {va} &rarr; {vb}</li>" for k, va, vb in row.check_changes()
        )
        diffs += "".join(
            f"<li>parameter <b>{esc(k)}</b>: {esc(va)} &rarr; {esc(vb)}</li>"
            for k, va, vb in row.param_diffs()
        )
        figures = "<br>".join(
            f"{q.removesuffix('_ms')}: {_num(la[q])} &rarr; {_num(lb[q])} ms {_shift(la[q], lb[q])}"
            for q in QUANTILES
        )
        ta, tb = row.throughput(row.a), row.throughput(row.b)
        body.append(
            f'<tr class="{"changed" if row.verdict_changed else ""}">'
            f"<td><b>{esc(row.scenario)}</b><br>{esc(row.layer)}</td>"
            f"<td>{verdict(row, row.a)} &rarr; {verdict(row, row.b)}</td>"
            f"<td>{f'<ul>{diffs}</ul>' if diffs else 'same'}</td>"
            f"<td class=num>{figures}<br>ops/s: {_num(ta, 0)} &rarr; {_num(tb, 0)} {_shift(ta, tb)}</td>"
            f'<td><img alt="A and B of {esc(row.key)}" src="{_chart(row, cmp.a_id, cmp.b_id)}"></td></tr>'
        )
    params = "".join(
        f"<li>{esc(row.key)}: "
        + ", ".join(f"{esc(k)} {esc(va)} &rarr; {esc(vb)}" for k, va, vb in row.param_diffs())
        + "</li>"
        for row in cmp.params_differ
    )
    warning = (
        f'<div class="params">The two runs\' parameters differ: <ul>{params}</ul></div>'
        if params
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>compare {esc(cmp.a_id)} and {esc(cmp.b_id)}</title>
<style>{_CSS}</style></head><body>
<h1>Run A <a href="{link(cmp.a_path)}">{esc(cmp.a_id)}</a> &rarr; run B
<a href="{link(cmp.b_path)}">{esc(cmp.b_id)}</a></h1>
<p>run status: {esc(cmp.a_status)} &rarr; {esc(cmp.b_status)}</p>
<p>{esc(cmp.headline())}; rows with a changed verdict are marked.</p>
{warning}
<table><thead><tr><th>scenario</th><th>verdict A &rarr; B</th><th>counts and checks that differ</th>
<th>latency quantiles, throughput</th><th>A and B side by side</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
