"""``-p name=value``: typed like the notebook's defaults; wrong names and values are usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import suite
from experiments.cli_checks import UsageError
from experiments.params import assignments, coerce, parse_assignments, resolve, type_name
from tests.experiments.test_suite import write_notebook


@pytest.mark.parametrize(
    ("text", "default", "value"),
    [
        ("200", "50", 200),
        ("2", "0.5", 2.0),
        ("2.5", "0.5", 2.5),
        ("true", "False", True),
        ("False", "True", False),
        ("atomic", '"row_lock"', "atomic"),
        ('"atomic"', '"row_lock"', "atomic"),
        ("123", '"row_lock"', "123"),
        ("mutant:lost_update", '"row_lock"', "mutant:lost_update"),
        ("[1, 2]", "[4]", [1, 2]),
        ("7", "None", 7),
        ("text", "None", "text"),
    ],
)
def test_values_take_the_type_of_the_default(text: str, default: str, value: object) -> None:
    got = coerce("x", text, default)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("text", "default", "message"),
    [
        ("abc", "50", "-p x=abc: x takes an int, like 50"),
        ("2.5", "50", "-p x=2.5: x takes an int, like 50"),
        ("True", "50", "-p x=True: x takes an int, like 50"),
        ("yes", "False", "-p x=yes: x takes a bool, like False"),
        ("fast", "0.5", "-p x=fast: x takes a float, like 0.5"),
        ("4", "[4]", "-p x=4: x takes a list, like [4]"),
    ],
)
def test_a_value_of_another_type_is_a_usage_error(text: str, default: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        coerce("x", text, default)
    assert str(caught.value) == message


def test_assignments_parse_and_reserved_names_point_to_their_option() -> None:
    assert parse_assignments(["users=200", "stock = 3", "name=a=b"]) == {
        "users": "200",
        "stock": "3",
        "name": "a=b",
    }
    for bad, message in [
        ("users", "-p users: expected NAME=VALUE, e.g. -p users=200"),
        ("=3", "-p =3: expected NAME=VALUE, e.g. -p users=200"),
        ("seed=1", "-p seed: set it with --seed, not -p"),
        ("database_url=x", "-p database_url: set it with --database-url, not -p"),
    ]:
        with pytest.raises(UsageError) as caught:
            parse_assignments([bad])
        assert str(caught.value) == message


def test_resolve_sets_each_notebook_what_it_declares_and_names_the_allowed() -> None:
    declared = {"a": {"users": "50", "stock": "5"}, "b": {"users": "10", "ops": "3"}}
    assert resolve({"users": "7", "ops": "1"}, declared) == {
        "a": {"users": 7},
        "b": {"users": 7, "ops": 1},
    }
    with pytest.raises(UsageError) as caught:
        resolve({"nope": "1"}, declared)
    assert str(caught.value) == "-p nope: no parameter 'nope' in a, b; allowed: ops, stock, users"


def test_type_names_and_rerun_words() -> None:
    assert [type_name(d) for d in ("50", "0.5", '"x"', "None", "[1]")] == [
        "int",
        "float",
        "str",
        "any (default None)",
        "list",
    ]
    words = assignments({"users": 200, "strategy": "atomic", "sizes": [1, 2]})
    assert words == ["-p", "users=200", "-p", "strategy=atomic", "-p", "sizes=[1, 2]"]
    # Read back, each word gives the same value.
    back = parse_assignments(words[1::2])
    assert coerce("users", back["users"], "50") == 200
    assert coerce("sizes", back["sizes"], "[4]") == [1, 2]


def test_one_scenario_runs_with_the_seed_given_several_derive_one_each(tmp_path: Path) -> None:
    for name in ("one", "two"):
        write_notebook(tmp_path / f"{name}.ipynb", layers=suite.LAYERS)
    notebooks = suite.discover(tmp_path)
    single = suite.plan_jobs(notebooks, ["one"], suite.LAYERS, "row_lock", 7)
    assert [j.seed for j in single] == [7, 7]
    several = suite.plan_jobs(notebooks, None, ("service",), "row_lock", 7)
    assert [j.seed for j in several] == [suite.derive_seed(7, "one"), suite.derive_seed(7, "two")]
    assert len({j.seed for j in several}) == 2


def test_each_job_replays_its_own_plan(tmp_path: Path) -> None:
    for name in ("one", "two"):
        write_notebook(tmp_path / f"{name}.ipynb", layers=suite.LAYERS)
    notebooks = suite.discover(tmp_path)
    jobs = suite.plan_jobs(
        notebooks,
        None,
        suite.LAYERS,
        "atomic",
        7,
        overrides={"one": {"expect_ok": 2}, "two": {}},
    )
    one_http = next(j for j in jobs if j.notebook.scenario == "one" and j.layer == "http")
    seed = suite.derive_seed(7, "one")
    assert one_http.rerun == (
        f"coupon-chaos run one --layer http --strategy atomic -p expect_ok=2 --seed {seed}"
    )
    assert one_http.parameters("postgresql://h/db", tmp_path)["expect_ok"] == 2
    # Replayed, a single-scenario run uses that seed as it is: the same plan.
    again = suite.plan_jobs(
        notebooks, ["one"], ("http",), "atomic", seed, {"one": {"expect_ok": 2}}
    )
    assert again[0].seed == one_http.seed
    assert again[0].parameters("u", tmp_path) == one_http.parameters("u", tmp_path)


def test_list_shows_every_notebook_run_runs_with_layers_and_typed_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from experiments.cli import main

    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for nb in suite.discover():
        line = next(x for x in printed.splitlines() if x.startswith(f"{nb.scenario}: "))
        assert f"[{nb.path.name}; layers {', '.join(nb.layers)}]" in line
    assert "[18_input_boundary.ipynb; layers http]" in printed
    assert "users=50 (int)" in printed  # flash_sale's parameters, typed
    assert "attempts=10 (int)" in printed  # the detection notebook's
    assert "duration_s=1.0 (float)" in printed  # the performance notebook's


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("given", "line"),
    [
        (["users", "abc"], "SpecError: users=abc: users takes an int, like 50"),
        (["users", "0"], "SpecError: users=0 is out of range: 1 <= value <= 2000"),
        (["strategy", "nosuch"], "SpecError: unknown strategy 'nosuch'; choose from advisory"),
    ],
)
def test_papermill_with_a_bad_parameter_stops_at_the_first_cell_with_the_clis_line(
    tmp_path: Path, given: list[str], line: str
) -> None:
    # As a user runs a notebook by hand: papermill's own command, no coupon-chaos.
    # Before: `-p users abc` ended in a raw TypeError deep in the plan.
    import json
    import subprocess
    import sys

    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "notebooks" / "05_flash_sale.ipynb"),
            str(out),
            "-p",
            *given,
            "--cwd",
            str(ROOT / "notebooks"),
            "--no-progress-bar",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    # Refused in the first cell: nothing below it ran (no lab, no database).
    assert "TypeError" not in proc.stderr
    assert "open_lab" not in proc.stderr
    assert "CouponService" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("SpecError")]
    assert errors, proc.stderr[-2000:]
    assert errors[-1].startswith(line), proc.stderr[-2000:]
    # The first cell after the parameters refused; the run itself never started.
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    failed = [
        i
        for i, c in enumerate(cells)
        if any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert len(failed) == 1
    assert "params.check(" in "".join(cells[failed[0]]["source"])
    assert all(c.get("execution_count") is None for c in cells[failed[0] + 1 :])
