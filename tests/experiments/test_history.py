"""A history written to disk loads back exactly, whatever the hostile input held."""

from __future__ import annotations

from pathlib import Path

from experiments.history import History, Op
from experiments.result import Result, Verdict


def _hostile_history() -> History:
    history = History()
    # A lone surrogate (JSON allows "\ud800"; UTF-8 cannot carry it raw), a NUL, RTL text.
    for i, name in enumerate(["coupon-\ud800", "nul-\x00-x", "קופון-😀"]):
        history.append(
            Op(
                op_id=i,
                worker=0,
                kind="claim",
                coupon=name,
                user=f"u{i}",
                invoke_ns=10 * i,
                complete_ns=10 * i + 5,
                result="not_found",
                http_status=404,
                message=f"no coupon {name}",
                body=f'{{"error": "{name}"}}',
            )
        )
    return history


def test_a_history_with_lone_surrogates_saves_and_loads_back_exactly(tmp_path: Path) -> None:
    history = _hostile_history()
    loaded = History.load(history.save(tmp_path / "h.jsonl"))
    assert loaded.ops == history.ops
    assert loaded.origin_ns == history.origin_ns


def test_a_result_with_lone_surrogates_saves(tmp_path: Path) -> None:
    # input_boundary's verdicts quote the names it sent: result.json carries them too.
    result = Result(
        scenario="s",
        seed=1,
        layer="http",
        strategy="row_lock",
        params={},
        history=_hostile_history(),
        verdicts=[Verdict("names", False, "refused coupon-\ud800")],
    )
    path = result.save(tmp_path)
    assert "refused coupon-\\ud800" in path.read_text(encoding="utf-8")
    loaded = History.load(tmp_path / "s-http.history.jsonl")
    assert loaded.ops[0].coupon == "coupon-\ud800"
