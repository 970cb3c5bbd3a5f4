"""The explore notebooks (issue 16): sweep, strategies and the playground, cell by cell.

``scripts/make_notebooks.py`` writes (and ``--check`` compares) these beside the scenario
notebooks. They do not fit its scenario table (no single ``scenarios.run`` call), so
each is a list of cells here, kept as thin: a ``parameters`` cell of literals, one call,
tables, charts, one assertion cell per expectation.
"""

from __future__ import annotations

from typing import Any

import nbformat as _nbformat

nbformat: Any = _nbformat

Cell = tuple[str, str]  # ("md" | "code" | "parameters", source)

_SWEEP: list[Cell] = [
    (
        "md",
        "# Sweep: outcome and latency distributions over seeds, strategies and layers\n\n"
        "**Hypothesis.** Run over many seeds, every real claim strategy gives the same "
        "outcome counts on every seed (the distribution of each count is degenerate: one "
        "value), passes every check, and its latency, throughput, start spread, retries "
        "and lock waits have a spread this page shows.\n\n"
        "**What would break it:** an outcome count that varies with the seed (a race the "
        "single runs were lucky to miss), a failed check on any seed, or a run that could "
        "not be measured.\n\n"
        "`coupon-chaos sweep SCENARIO... --seeds N --strategy all --layer both` runs a "
        "large sweep and executes this notebook on its tables (`tables_dir`); run as it "
        "is, it runs a small sweep itself.",
    ),
    (
        "parameters",
        "# None: a drawn first seed (printed), DATABASE_URL or an embedded PostgreSQL.\n"
        "seed = None\n"
        "database_url = None\n"
        "# A folder coupon-chaos sweep wrote (tables/): load it instead of running a sweep.\n"
        "tables_dir = None\n"
        "# The small sweep run when tables_dir is None.\n"
        'scenario_names = ["flash_sale"]  # or several: ["zero_stock_stampede", "flash_sale"]\n'
        "seeds = 3\n"
        'strategies = ["all"]  # "all", "mutants", or names\n'
        'layers = ["service"]  # or ["service", "http"]\n'
        'params = {}  # scenario parameters, e.g. {"users": 40}',
    ),
    (
        "code",
        "import pandas as pd\n"
        "from IPython.display import Markdown\n\n"
        "from experiments import sweep_report, sweep_tables\n"
        "from experiments.sweep import REAL_STRATEGIES",
    ),
    (
        "code",
        "data, folder = sweep_tables.load_or_run(\n"
        "    tables_dir,\n"
        "    scenario_names,\n"
        "    seeds=seeds,\n"
        "    first_seed=seed,\n"
        "    strategies=strategies,\n"
        "    layers=layers,\n"
        "    params=params,\n"
        "    database_url=database_url,\n"
        ")\n"
        'print("tables in", folder)\n'
        "data.meta",
    ),
    (
        "md",
        "## Summary\n\nOne row per scenario, strategy and layer: runs by status, median figures.",
    ),
    ("code", "sweep_report.cell_table(data)"),
    (
        "md",
        "## Outcomes\n\nEach distinct count of an outcome is one dot, sized by the seeds that "
        "gave it: a correct strategy draws exactly one dot per outcome.",
    ),
    ("code", "sweep_report.outcome_distribution(data)"),
    ("code", "sweep_report.outcome_values(data)"),
    ("md", "## Latency"),
    ("code", "sweep_report.latency_ecdf(data)"),
    ("code", "sweep_report.latency_bands(data)"),
    ("md", "## Throughput, start spread and overlap"),
    ("code", "sweep_report.throughput_chart(data)"),
    ("code", "sweep_report.start_chart(data)"),
    (
        "md",
        "## Retries and lock waits\n\n`serializable` counts the serialization failures it "
        "retried; the lock wait is `pg_stat_activity` sampled every 10 ms for the run's "
        "backends waiting on a lock (an estimate: backend-ms per claim).",
    ),
    ("code", "sweep_report.retries_chart(data)"),
    ("code", "sweep_report.lock_wait_chart(data)"),
    (
        "md",
        "## Mutants\n\nWith `--strategy mutants`: the share of runs (seeds x scenarios) in "
        "which each check caught each mutant.",
    ),
    ("code", "sweep_report.detection_chart(data)"),
    ("code", "sweep_report.detection_rates(data)"),
    ("md", "## Conclusion\n\nWritten from the figures above."),
    ("code", "Markdown(sweep_report.conclusion(data))"),
    (
        "md",
        "## Your own analysis: the tidy tables\n\n`runs.csv` (one row per run), `ops.csv` "
        "(one row per operation) and `checks.csv` (one row per run and check) load with "
        "pandas in any notebook.",
    ),
    (
        "code",
        'runs = pd.read_csv(f"{folder}/runs.csv")\n'
        'runs.groupby(["scenario", "strategy", "layer"])["throughput_ops_s"].describe()',
    ),
    (
        "code",
        'ops = pd.read_csv(f"{folder}/ops.csv")\n'
        'claims = ops[(ops["kind"] == "claim") & (ops["phase"] == "load")]\n'
        'claims.groupby(["scenario", "strategy", "layer"])["latency_ms"].quantile([0.5, 0.99]).unstack()',
    ),
    ("md", "## Expectations"),
    (
        "code",
        "varied = sweep_report.not_degenerate(data)\n"
        'assert not varied, f"expected one value per outcome for every real strategy, got {varied}"',
    ),
    (
        "code",
        "# A run still no experiment after its redraws (its stampede never collided) tested\n"
        "# nothing: it is no pass, like a failed or unknown one.\n"
        'bad = data.real[data.real["status"] != "pass"]\n'
        "assert bad.empty, f\"expected every real run to pass, got {bad[['scenario', 'strategy', 'layer', 'seed', 'status', 'failed_checks']].to_dict('records')}\"",
    ),
    (
        "code",
        'skipped = int((data.runs["status"] == "skipped").sum())\n'
        'assert skipped == 0, f"expected every run done, {skipped} skipped (time budget)"',
    ),
    (
        "code",
        'unmeasured = data.real[data.real[["throughput_ops_s", "p50_ms", "p99_ms", "start_spread_ms"]].isna().any(axis=1)]\n'
        'assert unmeasured.empty, f"expected every real run measured, got {len(unmeasured)} without figures"',
    ),
    (
        "code",
        'serializable = data.real[data.real["strategy"] == "serializable"]\n'
        'assert serializable["retries"].notna().all(), "expected retries counted on every serializable run"',
    ),
    (
        "code",
        'sampler = data.real["lock_sampler_error"].dropna()\n'
        'assert sampler.empty, f"expected the lock-wait sampler to work, got {sampler.tolist()[:3]}"',
    ),
    (
        "code",
        "rates = sweep_report.detection_rates(data)\n"
        'equivalent = set(data.runs[data.runs["equivalent"] == True]["strategy"])  # noqa: E712\n'
        'caught = rates[rates["mutant"].isin(equivalent) & (rates["check"] == "any check") & (rates["rate"] > 0)]\n'
        "assert caught.empty, f\"expected equivalent mutants never caught, got {caught.to_dict('records')}\"",
    ),
]


_STRATEGIES: list[Cell] = [
    (
        "md",
        "# Strategies side by side\n\n"
        "**Question.** The same scenario under the five claim strategies (`row_lock`, "
        "`atomic`, `serializable`, `advisory`, `row_lock_pipelined`), each over the same seeds: do they agree on "
        "every outcome, and how do they differ in latency, throughput, retries and time "
        "spent waiting for locks?\n\n"
        "**What must hold:** every strategy passes every check on every seed, with the same "
        "outcome counts. Speed is a finding, not a pass or fail: the conclusion below is "
        "written from the figures of this run.",
    ),
    (
        "parameters",
        "# None: a drawn first seed (printed), DATABASE_URL or an embedded PostgreSQL.\n"
        "seed = None\n"
        'layer = "service"  # or "http"\n'
        "database_url = None\n"
        'scenario = "flash_sale"\n'
        "seeds = 3\n"
        'params = {"stock": 5, "users": 50}  # the scenario\'s parameters',
    ),
    (
        "code",
        "from IPython.display import Markdown\n\n"
        "from experiments import sweep_report\n"
        "from experiments.sweep import REAL_STRATEGIES, run_sweep",
    ),
    (
        "code",
        "data = run_sweep(\n"
        "    [scenario],\n"
        "    seeds=seeds,\n"
        "    first_seed=seed,\n"
        '    strategies=["all"],\n'
        "    layers=[layer],\n"
        "    params=params,\n"
        "    database_url=database_url,\n"
        ")",
    ),
    ("code", "sweep_report.cell_table(data)"),
    ("md", "## Conclusion\n\nWritten from the figures below, not by hand."),
    ("code", "Markdown(sweep_report.conclusion(data))"),
    ("md", "## One chart per measure"),
    ("code", "sweep_report.outcome_distribution(data)"),
    ("code", "sweep_report.latency_ecdf(data)"),
    ("code", "sweep_report.latency_bands(data)"),
    ("code", "sweep_report.throughput_chart(data)"),
    ("code", "sweep_report.lock_wait_chart(data)"),
    ("code", "sweep_report.retries_chart(data)"),
    ("code", "sweep_report.start_chart(data)"),
    ("md", "## Expectations"),
    (
        "code",
        'ran = set(data.real["strategy"])\n'
        'assert ran == set(REAL_STRATEGIES), f"expected every real strategy, ran {sorted(ran)}"',
    ),
    (
        "code",
        "# A run still no experiment after its redraws (its stampede never collided) tested\n"
        "# nothing: it is no pass, like a failed or unknown one.\n"
        'bad = data.real[data.real["status"] != "pass"]\n'
        "assert bad.empty, f\"expected every run to pass, got {bad[['strategy', 'seed', 'status', 'failed_checks']].to_dict('records')}\"",
    ),
    (
        "code",
        "varied = sweep_report.not_degenerate(data)\n"
        'assert not varied, f"expected the same outcome counts on every seed, got {varied}"',
    ),
    (
        "code",
        'per = data.real.groupby("strategy")[sweep_report.outcome_columns(data.real)].agg(lambda s: tuple(sorted(s.fillna(0).unique())))\n'
        "assert len(per.drop_duplicates()) == 1, f\"expected the strategies to agree on every outcome, got {per.to_dict('index')}\"",
    ),
    (
        "code",
        'serializable = data.real[data.real["strategy"] == "serializable"]\n'
        'assert serializable["retries"].notna().all(), "expected retries counted on every serializable run"',
    ),
]


_PLAYGROUND: list[Cell] = [
    (
        "md",
        "# Playground\n\n"
        "Turn a knob and watch what changes, without writing code: pick a scenario, a "
        "strategy (the mutants included: bugs the lab must catch), a layer, the workers, the "
        "stock, a seed and a fault, then press **Run**. The charts and verdicts under the "
        "controls are replaced in place by each run.\n\n"
        "Opened in JupyterLab (`make lab`) the controls are live; executed headless "
        "(`coupon-chaos run`, nbmake) this notebook runs the default configuration below "
        "and asserts its verdicts like any other.",
    ),
    (
        "parameters",
        "# None: a drawn seed, DATABASE_URL or an embedded PostgreSQL.\n"
        "seed = None\n"
        'layer = "service"  # or "http"\n'
        'strategy = "row_lock"  # or atomic, serializable, advisory, mutant:lost_update, ...\n'
        "database_url = None\n"
        "out_dir = None  # a folder to record the default run's result in, or None\n"
        'scenario = "flash_sale"\n'
        "workers = 50\n"
        "stock = 5\n"
        'fault = "none"  # or a fault scenario: pool_exhaustion, connection_drop, ...',
    ),
    ("code", "from experiments import playground, report"),
    (
        "code",
        "pg = playground.Playground(\n"
        "    scenario=scenario,\n"
        "    strategy=strategy,\n"
        "    layer=layer,\n"
        "    workers=workers,\n"
        "    stock=stock,\n"
        "    seed=seed,\n"
        "    fault=fault,\n"
        "    database_url=database_url,\n"
        ")\n"
        "pg.controls()",
    ),
    (
        "md",
        "## The default configuration\n\nRun once as the parameters say (what CI checks); "
        "the Run button above runs whatever the controls say.",
    ),
    ("code", "result = pg.run()\npg.describe(result)"),
    ("code", "report.verdict_table(result)"),
    ("code", "report.outcome_chart(result)"),
    ("code", "report.latency_ecdf(result)"),
    ("code", "report.timeline(result)"),
    ("md", "## Expectations"),
    (
        "code",
        "# True for a real strategy; None for a mutant (one run may miss its race).\n"
        "expected = pg.expected_pass()\n"
        'assert expected is None or result.passed == expected, f"expected passed={expected} for {pg.strategy}, failed: {[(v.name, v.detail) for v in result.failed]}"',
    ),
    (
        "code",
        'claims = result.outcomes().get("claim", {})\n'
        'assert sum(claims.values()) > 0, f"expected claims in the history, got {result.outcomes()}"',
    ),
    ("md", "## Record"),
    ("code", 'if out_dir:\n    print("saved", result.save(out_dir))'),
]


#: File name -> (cells, metadata of the suite: the notebook's name and its layers).
NOTEBOOKS: dict[str, tuple[list[Cell], dict[str, Any]]] = {
    "00_playground.ipynb": (_PLAYGROUND, {"scenario": "playground", "layers": ["service"]}),
    "sweep.ipynb": (_SWEEP, {"scenario": "sweep", "layers": ["service"]}),
    "strategies.ipynb": (_STRATEGIES, {"scenario": "strategies", "layers": ["service"]}),
}


def build(cells: list[Cell], meta: dict[str, Any]) -> Any:
    """A notebook of ``cells`` with stable ids, the python3 kernel, the suite's metadata."""
    made = []
    for i, (kind, source) in enumerate(cells):
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell.id = f"cell-{i:02d}"
        made.append(cell)
    nb = nbformat.v4.new_notebook(cells=made)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["coupon_chaos"] = meta
    return nb
