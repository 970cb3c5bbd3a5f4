"""The one pipeline, on the real database: names unique, the run bound said, attempts kept."""

from __future__ import annotations

import pytest

from experiments.pipeline import Workload, run
from experiments.plans import mixed_plan, stampede_plan
from experiments.result import Verdict
from experiments.spec import RunSpec


def test_verdict_names_are_unique_within_a_result(db_url: str) -> None:
    """negative_stock emitted two verdicts named claim_counts; Result.verdict found the
    first only. The pipeline refuses such a result outright."""
    twice = Workload(
        make_plan=lambda s, prefix: stampede_plan(s, prefix, stock=1, users=2),
        expect=lambda history, state, r: [
            Verdict("claim_counts", True, "a"),
            Verdict("claim_counts", True, "b"),
        ],
    )
    with pytest.raises(
        ValueError, match=r"checks named more than once in one result: \['claim_counts'\]"
    ):
        run(RunSpec("twice", seed=1, database_url=db_url), twice)


def test_a_run_past_its_bound_ends_and_says_so(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = Workload(
        make_plan=lambda s, prefix: mixed_plan(
            s, prefix, coupons=1, amount=10, ops=4000, create_ratio=0.0, claim_ratio=0.0, workers=1
        ),
        expect=lambda history, state, r: [],
    )
    result = run(RunSpec("bounded", seed=1, database_url=db_url, run_timeout_s=0.3), slow)
    out = capsys.readouterr().out
    assert "[bounded] run bound of 0.3 s reached:" in out
    bound = result.summary["run_bound"]
    assert bound["reached"] is True
    assert bound["not_started"] > 0
    # The ops the bound never started ran nowhere: the catalog's checks say what ran.
    assert result.duration_s < 10


def test_every_attempt_of_a_run_is_recorded_once(db_url: str) -> None:
    """A run that was not drawn again still records its one attempt, with its verdicts."""
    result = run(
        RunSpec("once", seed=2, database_url=db_url),
        Workload(
            make_plan=lambda s, prefix: stampede_plan(s, prefix, stock=1, users=2),
            expect=lambda history, state, r: [],
            validity=lambda r: [],
        ),
    )
    assert [a.number for a in result.attempts] == [1]
    assert [v.name for v in result.attempts[0].verdicts] == [v.name for v in result.verdicts]
    assert result.summary["attempts"] == [{"number": 1, "status": result.status}]


class _Window:
    """The smallest fault: a window open from start to stop, acting on nothing (what is
    under test is the pipeline's control of the load around it, not a fault)."""

    def __init__(self) -> None:
        from experiments.faults.window import Windows

        self.windows = Windows("window")

    def start(self) -> None:
        self.windows.open("window")

    def stop(self) -> None:
        self.windows.close("window")


@pytest.mark.slow
def test_a_load_ended_by_its_fault_is_not_said_to_have_reached_the_run_bound(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fault scenario's stream load is stopped ``after_s`` past its fault, long before
    its run bound: it printed "run bound of 30 s reached" and recorded ``run_bound``
    reached (the runner took any unstarted op for the bound)."""
    streamed = Workload(
        make_plan=lambda s, prefix: mixed_plan(
            s,
            prefix,
            coupons=1,
            amount=10,
            ops=100_000,
            create_ratio=0.0,
            claim_ratio=0.0,
            workers=1,
        ),
        expect=lambda history, state, r: [],
        faults=lambda r: [_Window()],
        fault_s=0.2,
        after_s=0.1,
    )
    result = run(RunSpec("streamed", seed=1, database_url=db_url, run_timeout_s=30), streamed)
    out = capsys.readouterr().out
    assert "run bound" not in out
    assert "run_bound" not in result.summary
    assert result.duration_s < 10
