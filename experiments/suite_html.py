"""The suite's HTML: each notebook's report page under its verdict banner, and the run's index.

Pages are self-contained files (images as data URIs, nothing fetched from the network), so a
run's folder opens from disk, offline. The suite (``experiments.suite``) calls ``render_job``
for each executed notebook and ``index_html`` once for the run; this module knows only the
records of ``experiments.suite_report``, never the suite (the arrow runs one way).
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

from experiments import figures
from experiments.suite_report import JobReport, SuiteReport

__all__ = ["index_html", "render_html", "render_job"]


# -- render --------------------------------------------------------------------------------

# The lab template, minus everything it would fetch from a CDN (require.js, MathJax,
# mermaid, widgets): the page must open from disk, offline, as one file. A banner on top
# gives the verdict, the counts, the seed and the run at a glance (a reader otherwise
# scrolled to the verdict table to learn whether the run passed).
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}<style>
.cc-banner { margin: 0 0 1.5em; padding: .8em 1.2em; border-left: .5em solid; font-size: 15px;
  font-family: system-ui, sans-serif; line-height: 1.5; }
.cc-banner p { margin: .3em 0; }
.cc-banner nav { font-size: 13px; }
.cc-pass { border-color: #1a7f37; background: #eef8f0; }
.cc-fail { border-color: #cf222e; background: #fdeeee; }
.cc-unknown { border-color: #9a6700; background: #fff8c5; }
.cc-no_experiment { border-color: #8250df; background: #f5f0ff; }
.cc-partial { border-color: #6e7781; background: #f6f8fa; }
.cc-skipped, .cc-interrupted { border-color: #6e7781; background: #f6f8fa; }
.cc-verdict { display: inline-block; padding: 0 .5em; color: #fff; font-weight: bold;
  border-radius: 3px; }
.cc-pass .cc-verdict { background: #1a7f37; }
.cc-skipped .cc-verdict, .cc-interrupted .cc-verdict { background: #6e7781; }
.cc-unknown .cc-verdict { background: #9a6700; }
.cc-no_experiment .cc-verdict { background: #8250df; }
.cc-partial .cc-verdict { background: #fff; color: #57606a; border: 1px solid #57606a; }
.cc-fail .cc-verdict { background: #cf222e; text-transform: uppercase; }
.cc-banner ul { margin: .3em 0 0 1.2em; padding: 0; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}{{ resources.get("banner", "") }}{%- endblock body_header -%}
{#- The lab template's input block without its clean_html: pygments escapes every token
    it writes, so bleach (a quarter of a page's render, measured) found nothing to clean. -#}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
"""

#: One exporter per variant, made once: a new one compiles its ten templates again
#: (a third of a page's render, measured). nbconvert registers filters on the
#: exporter's environment at each conversion, so one conversion at a time per exporter.
_EXPORTERS: dict[bool, tuple[Any, threading.Lock]] = {}
_EXPORTERS_LOCK = threading.Lock()


def _exporter(hide_code: bool) -> tuple[Any, threading.Lock]:
    with _EXPORTERS_LOCK:
        if hide_code not in _EXPORTERS:
            import jinja2
            from nbconvert import HTMLExporter

            exporter = HTMLExporter(  # type: ignore[no-untyped-call]
                template_name="lab",
                template_file="coupon_chaos.html.j2",
                extra_loaders=[jinja2.DictLoader({"coupon_chaos.html.j2": _TEMPLATE})],
                embed_images=True,
                exclude_input=hide_code,
                exclude_input_prompt=hide_code,
                exclude_output_prompt=hide_code,
            )
            _EXPORTERS[hide_code] = (exporter, threading.Lock())
        return _EXPORTERS[hide_code]


def render_html(
    nb: Any, path: Path, title: str = "", hide_code: bool = False, banner: str = ""
) -> Path:
    """Write ``nb`` as one self-contained HTML file (images embedded as data URIs).

    ``banner`` is HTML put first in the body (the suite's verdict banner).
    """
    exporter, lock = _exporter(hide_code)
    if hide_code:
        nb = _without_tracebacks(nb)
    resources = {"metadata": {"name": title}, "banner": banner}
    with lock:
        body, _ = exporter.from_notebook_node(nb, resources=resources)
    path.write_text(body, encoding="utf-8")
    return path


def _without_tracebacks(nb: Any) -> Any:
    """A copy whose error outputs keep their message but not their traceback.

    A traceback quotes the cell's code (the failing ``assert`` line, the frames above
    it): the version for readers keeps only ``AssertionError: expected ..., got ...``.
    """
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
    return nb


def render_job(nb: Any, path: Path, report: JobReport, run_id: str, hide: bool) -> None:
    """Write one job's report page: its executed notebook under the verdict banner."""
    verdict = report.label
    title = f"{verdict}: {report.name} ({report.layer}, seed {report.seed})"
    render_html(nb, path, title=title, hide_code=hide, banner=_banner(report, run_id, hide))


def _banner(job: JobReport, run_id: str, hide: bool) -> str:
    esc = html.escape
    passed = sum(c["passed"] is True for c in job.checks)
    n_skipped = len(job.skipped_checks)
    other = job.html if hide else job.html_no_code
    other_link = (
        f' · <a href="{esc(other)}">{"with code" if hide else "without code"}</a>' if other else ""
    )
    failed = "".join(_check_item(c) for c in job.failures)
    return (
        f'<header class="cc-banner cc-{job.badge}">'
        f'<nav><a href="index.html">&larr; all scenarios of run {esc(run_id)}</a>{other_link}</nav>'
        f'<p class="cc-head"><span class="cc-verdict">{esc(job.label)}</span> '
        f"<b>{esc(job.name)}</b> · layer <b>{esc(job.layer)}</b> · strategy "
        f"<b>{esc(job.strategy)}</b> · seed <b>{job.seed}</b></p>"
        f"<p>{passed} of {len(job.checks)} checks passed"
        f"{f' ({n_skipped} skipped)' if n_skipped else ''} · {_outcomes_html(job.outcomes)}"
        f" · experiment {job.timing.get('experiment_s', 0.0):.2f} s"
        f"{_spread_text(job.start_spread_ms)}{_collision_text(job.collision)}"
        f" · run {esc(run_id)}</p>"
        f"{_attempts_html(job)}"
        f"{f'<p>replay this plan: <code>{esc(job.rerun)}</code></p>' if job.rerun else ''}"
        f"{f'<ul>{failed}</ul>' if failed else ''}</header>"
    )


def _attempts_html(job: JobReport) -> str:
    """A redrawn run: the summary line, then each attempt with its status and peak."""
    if not job.drawn_again:
        return ""
    esc = html.escape
    items = "".join(
        f"<li>attempt {a.get('number')}: {esc(str(a.get('status')))}"
        + (
            f", peak in flight {a['figures']['peak_in_flight']}"
            if "peak_in_flight" in (a.get("figures") or {})
            else ""
        )
        + "</li>"
        for a in job.attempts
    )
    return f"<p>{esc(job.drawn_again)}</p><ul>{items}</ul>"


def _outcomes_html(outcomes: dict[str, dict[str, int]]) -> str:
    esc = html.escape
    return " · ".join(
        f"{esc(kind)}: " + ", ".join(f"{esc(r)} <b>{n}</b>" for r, n in by.items())
        for kind, by in outcomes.items()
    )


def _spread_text(spread: float | dict[str, float] | None) -> str:
    if spread is None:
        return ""
    if isinstance(spread, dict):
        return " · start spread " + ", ".join(f"{k}: {v:.1f} ms" for k, v in spread.items())
    return f" · start spread {spread:.1f} ms"


def _collision_text(collision: dict[str, Any]) -> str:
    peak, share = collision.get("peak_in_flight"), collision.get("overlap_with_winner")
    if peak is None:
        return ""
    if isinstance(peak, dict):
        shares = share if isinstance(share, dict) else {}
        return " · peak in flight " + ", ".join(
            f"{k}: {v} (overlap {_share(shares.get(k))})" for k, v in peak.items()
        )
    return f" · peak in flight {peak}, overlap with the winner {_share(share)}"


def _share(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "n/a"


# -- index ---------------------------------------------------------------------------------


def _outcome_png(run_dir: Path, job: JobReport) -> str:
    from experiments import report
    from experiments.history import History

    paths = sorted((run_dir / "data" / f"{job.name}-{job.layer}").glob("*.history.jsonl"))
    if not paths:
        return ""
    try:
        fig = report.outcome_chart(History.load(paths[0]))
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # a history we cannot read: the row says so through its verdict
    # The row already names scenario and layer; at the page's scale a 7.5-inch figure
    # shrunk into its cell left 5-pixel labels, so draw it at the size it is shown.
    fig.axes[0].set_title("")
    fig.set_size_inches(4.0, fig.get_size_inches()[1] * 0.7)
    return report.to_data_uri(fig, dpi=70)


#: Worst first: the order of the grid and the rows (failures on top).
_RANK = {"fail": 0, "unknown": 1, "no_experiment": 2, "interrupted": 3, "partial": 4, "pass": 5}
#: What a tile says (a partial pass says how many checks it skipped).
_TILE = {"no_experiment": "not an experiment"}
#: Scenario groups side by side in the grid: 3 fit 1366 px with two layers each.
_GRID_GROUPS = 3


def _rank(job: JobReport) -> int:
    return _RANK.get(job.badge, 6)  # skipped last: it tested nothing either way


def _tile_text(job: JobReport) -> str:
    if job.badge == "partial":
        return f"pass, {len(job.skipped_checks)} skipped"
    return _TILE.get(job.status, job.label)


def _grid_html(suite: SuiteReport) -> str:
    """Every scenario's verdict on one screen: scenario x layer tiles, worst first.

    Each tile links to its report page (a skipped one, which has none, to its row).
    Scenarios flow into ``_GRID_GROUPS`` groups side by side, each with its own header.
    """
    esc = html.escape
    layers = list(dict.fromkeys(j.layer for j in suite.jobs))
    by: dict[str, dict[str, JobReport]] = {}
    for each in suite.jobs:
        by.setdefault(each.name, {})[each.layer] = each
    names = sorted(by, key=lambda n: min(_rank(j) for j in by[n].values()))  # stable sort
    if not names:
        return ""
    cells: list[str] = []
    for name in names:
        tiles = []
        for layer in layers:
            job = by[name].get(layer)
            if job is None:
                tiles.append('<td class="tile none" title="not run on this layer">&ndash;</td>')
                continue
            href = job.html or f"#{job.name}-{job.layer}"
            tiles.append(
                f'<td class="tile {job.badge}"><a href="{esc(href)}" '
                f'title="{esc(name)} on {esc(layer)}: {esc(job.label)}">'
                f"{esc(_tile_text(job))}</a></td>"
            )
        cells.append(f'<th class="sc" scope="row">{esc(name)}</th>{"".join(tiles)}')
    groups = min(_GRID_GROUPS, len(cells))
    per = -(-len(cells) // groups)
    rows = []
    for r in range(per):
        row = [cells[g * per + r] if g * per + r < len(cells) else "" for g in range(groups)]
        rows.append(
            "<tr>" + '<td class="gap"></td>'.join(x or _blank(layers) for x in row) + "</tr>"
        )
    gaps = '<th class="gap"></th>'.join(
        '<th class="sc">scenario</th>' + "".join(f"<th>{esc(la)}</th>" for la in layers)
        for _ in range(groups)
    )
    return (
        f'<table id="grid" class="grid"><thead><tr>{gaps}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="legend"><small>Each tile links to its report; worst first. '
        '<span class="tile-key pass">pass</span> <span class="tile-key fail">FAIL</span> '
        '<span class="tile-key unknown">unknown</span> '
        '<span class="tile-key no_experiment">not an experiment</span> '
        '<span class="tile-key partial">pass, N skipped</span> (checks it could not run) '
        '<span class="tile-key skipped">skipped</span> (not run: the reason is in its row) '
        "&ndash; not run on this layer.</small></p>"
    )


def _blank(layers: list[str]) -> str:
    return '<td class="sc"></td>' + "".join("<td></td>" for _ in layers)


_INDEX_CSS = """
body { font-family: system-ui, sans-serif; margin: 1em 1.5em; color: #1f2328; font-size: 14px; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
.banner { padding: .4em 1em; border-left: .5em solid; margin-bottom: .6em; line-height: 1.4; }
.banner.pass { border-color: #1a7f37; background: #eef8f0; }
.banner.fail { border-color: #cf222e; background: #fdeeee; }
.banner.unknown { border-color: #9a6700; background: #fff8c5; }
.banner.no_experiment { border-color: #8250df; background: #f5f0ff; }
.banner.partial, .banner.skipped, .banner.interrupted { border-color: #6e7781;
  background: #f6f8fa; }
.banner p { margin: .2em 0; }
.big { font-size: 1.25em; font-weight: bold; }
.tag { display: inline-block; padding: 0 .45em; border-radius: 3px; color: #fff;
  font-weight: bold; }
.tag.pass, .tile.pass, .tile-key.pass { background: #1a7f37; }
.tag.fail, .tile.fail, .tile-key.fail { background: #cf222e; }
.tag.skipped, .tag.interrupted, .tile.skipped, .tile.interrupted,
.tile-key.skipped { background: #6e7781; }
.tag.unknown, .tile.unknown, .tile-key.unknown { background: #9a6700; }
.tag.no_experiment, .tile.no_experiment, .tile-key.no_experiment { background: #8250df; }
.tag.partial { background: #fff; color: #57606a; border: 1px solid #57606a; }
.tile.partial, .tile-key.partial { background: #d8f0dd; }
.tile.partial a, .tile-key.partial { color: #1a4d2a; }
table.grid { width: auto; border-collapse: separate; border-spacing: 3px 2px; margin: .2em 0; }
table.grid th { font-size: 12px; border: 0; padding: 0 .3em; }
table.grid th.sc { text-align: right; font-weight: normal; color: #1f2328; width: 13em;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 13em; }
table.grid td { padding: 0; border: 0; }
table.grid td.gap, table.grid th.gap { width: 1.2em; }
.tile { width: 9.5em; text-align: center; font-size: 12px; font-weight: bold;
  border-radius: 3px; }
.tile a { display: block; color: #fff; text-decoration: none; padding: .12em .3em;
  white-space: nowrap; }
.tile.none { background: #f6f8fa; color: #8c959f; }
.tile-key { padding: 0 .4em; border-radius: 3px; color: #fff; font-weight: bold; }
p.legend { margin: .2em 0 1em; }
table.rows { border-collapse: collapse; width: 100%; table-layout: fixed; }
table.rows th { text-align: left; font-size: 12px; color: #59636e;
  border-bottom: 2px solid #d1d9e0; }
table.rows td, table.rows th { padding: .35em .45em; vertical-align: top;
  overflow-wrap: anywhere; }
table.rows tbody tr { border-bottom: 1px solid #d1d9e0; }
tr.fail { background: #fff5f5; }
tr.unknown, tr.no_experiment { background: #fffbe6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td ul { margin: .3em 0 0 1em; padding: 0; font-size: 12px; }
.outcomes { width: 100%; }
.outcomes tr, .outcomes td { padding: 0 .3em 0 0; border: 0; font-size: 12px; }
.outcomes td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.chart img { width: 100%; max-width: 300px; height: auto; display: block; }
code { background: #f6f8fa; padding: 0 .3em; font-size: 12px; }
small { color: #59636e; }
"""


def _outcomes_cell(outcomes: dict[str, dict[str, int]]) -> str:
    esc = html.escape
    if not outcomes:
        return "<small>no history recorded</small>"
    # The operation kind only on its first line: a column of "claim claim claim" is noise.
    rows = "".join(
        f"<tr><td>{esc(kind) if i == 0 else ''}</td><td>{esc(r)}</td><td class=n>{n}</td></tr>"
        for kind, by in outcomes.items()
        for i, (r, n) in enumerate(by.items())
    )
    return f'<table class="outcomes">{rows}</table>'


def _previous_link(suite: SuiteReport) -> str:
    if not suite.previous or not (suite.run_dir / "compare.html").exists():
        return ""
    esc = html.escape
    return (
        f'<p><a href="compare.html">Compared with the previous run</a> '
        f'(<a href="../{esc(suite.previous)}/index.html">{esc(suite.previous)}</a>): '
        "changed verdicts, outcome counts, latency and throughput.</p>"
    )


def _check_item(check: dict[str, Any]) -> str:
    """A check that did not pass, as a list item; a finding says it is one."""
    esc = html.escape
    tag = " (finding)" if check.get("finding") is not None else ""
    return f"<li><b>{esc(check['name'])}</b>{tag}: {esc(str(check['detail']))}</li>"


def _row_html(suite: SuiteReport, job: JobReport) -> str:
    """One notebook's row: verdict, what failed, checks, outcomes, figures, links, chart."""
    esc = html.escape
    anchor = f"{job.name}-{job.layer}"
    failed = "".join(_check_item(c) for c in [*job.failures, *job.skipped_checks])
    png = _outcome_png(suite.run_dir, job)
    chart = f'<img alt="outcomes of {esc(anchor)}" src="{png}">' if png else ""
    links = f'<a href="{esc(job.html)}">report</a>' if job.html else "(no report)"
    if job.html_no_code:
        links += f' · <a href="{esc(job.html_no_code)}">without code</a>'
    counts = figures.check_counts(job.checks)
    spread = job.start_spread_ms
    spread_text = (
        "<br>".join(f"{k}: {v:.1f}" for k, v in spread.items())
        if isinstance(spread, dict)
        else ("" if spread is None else f"{spread:.1f}")
    )
    peak = job.collision.get("peak_in_flight")
    overlap = job.collision.get("overlap_with_winner")
    if isinstance(peak, dict):
        shares = overlap if isinstance(overlap, dict) else {}
        collision_text = "<br>".join(f"{k}: {v} / {_share(shares.get(k))}" for k, v in peak.items())
    else:
        collision_text = "" if peak is None else f"{peak} / {_share(overlap)}"
    figures_html = (
        f"{job.duration_s:.1f} s<br><small>experiment {job.timing.get('experiment_s', 0):.2f} s"
        f"</small>"
        + (f"<br><small>spread {spread_text} ms</small>" if spread_text else "")
        + (f"<br><small>peak / overlap {collision_text}</small>" if collision_text else "")
        + f"<br><small>seed {job.seed}</small>"
    )
    return (
        f'<tr id="{esc(anchor)}" class="{job.badge}">'
        f'<td><span class="tag {job.badge}">{esc(job.label)}</span></td>'
        f"<td><b>{esc(job.name)}</b><br>{esc(job.layer)} · {esc(job.strategy)}"
        f"{f'<br><small>skipped: {esc(job.skipped)}</small>' if job.skipped else ''}"
        f"{f'<br><small>{esc(job.drawn_again)}</small>' if job.drawn_again else ''}"
        f"{f'<ul>{failed}</ul>' if failed else ''}</td>"
        f"<td class=num>{counts['passed']} / {counts['checks']}"
        f"{_skipped_text(counts)}</td>"
        f"<td>{_outcomes_cell(job.outcomes)}</td>"
        f"<td class=num>{figures_html}</td>"
        f"<td>{links}"
        f"{f'<br><small>replay: <code>{esc(job.rerun)}</code></small>' if job.rerun else ''}"
        f'</td><td class="chart">{chart}</td></tr>'
    )


def _skipped_text(counts: dict[str, int]) -> str:
    return f"<br><small>{counts['skipped']} skipped</small>" if counts["skipped"] else ""


def index_html(suite: SuiteReport) -> str:
    """The run's ``index.html``: the verdict banner, the grid of every scenario's verdict
    (the first screen at 1366x768), then one row per notebook, worst first."""
    esc = html.escape
    ordered = sorted(suite.jobs, key=_rank)  # stable: the run's order within a rank
    rows = [_row_html(suite, job) for job in ordered]
    n_pass = sum(j.passed for j in suite.jobs)
    n_skipped = len(suite.skipped)
    verdict, badge = suite.label, suite.badge
    failed_links = ", ".join(
        f'<a href="#{esc(j.name)}-{esc(j.layer)}">{esc(j.name)} [{esc(j.layer)}]</a>'
        for j in ordered
        if j.status not in ("pass", "skipped", "interrupted")
    )
    stopped = (
        f"<p>Interrupted by {esc(suite.interrupted)}: every database, server and kernel it"
        " started was stopped; the notebooks it had not finished are marked.</p>"
        if suite.interrupted
        else ""
    )
    checks_skipped = (
        f", {suite.checks_skipped} checks skipped in those that ran" if suite.checks_skipped else ""
    )
    timing = suite.to_dict()["timing"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(verdict)}: coupon chaos lab, run {esc(suite.run_id)}</title>
<style>{_INDEX_CSS}</style></head><body>
<h1>Coupon chaos lab · run {esc(suite.run_id)}</h1>
<div class="banner {badge}">
<p class="big"><span class="tag {badge}">{esc(verdict)}</span>
{n_pass} of {len(suite.jobs)} {suite.jobs_are} passed{f", {n_skipped} skipped (not run)" if n_skipped else ""}{checks_skipped}</p>
{stopped}
{f"<p>Failed: {failed_links}</p>" if failed_links else ""}
{_previous_link(suite)}
<p><small>Run seed <b>{suite.seed}</b> (each scenario's seed derives from it; replay with
<code>{esc(suite.rerun or f"coupon-chaos run --seed {suite.seed}")}</code>) · started {esc(suite.started_at)}
· {suite.duration_s:.1f} s, {suite.parallel} notebook(s) at a time
· database {esc(suite.database or "embedded")}</small></p>
</div>
{_grid_html(suite)}
<table class="rows"><colgroup><col style="width: 8.5em"><col style="width: 17%">
<col style="width: 5em"><col style="width: 15%"><col style="width: 11em"><col style="width: 17%">
<col></colgroup>
<thead><tr><th>verdict</th><th>scenario</th><th>checks passed</th><th>outcomes</th>
<th>duration, start spread (ms), peak in flight / overlap with winner, seed</th><th>report</th>
<th>outcome chart</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p><small>Summed over notebooks: kernel start-up and shutdown {timing["kernel_s"]:.1f} s,
cells {timing["cells_s"]:.1f} s (of which experiments {timing["experiment_s"]:.1f} s),
rendering {timing["render_s"]:.1f} s; database start {timing["database_s"]:.1f} s.</small></p>
<p><a href="summary.json">summary.json</a></p>
</body></html>
"""
