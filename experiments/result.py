"""What an experiment returns: its history, the checks' verdicts, every attempt, a summary.

A Result round-trips: ``save`` writes ``<scenario>-<layer>.result.json`` (and the
history beside it), ``Result.load`` reads both back, verdicts and attempts included, so
the suite, the report and ``compare`` read Verdicts, never raw dicts judged again.

A run's ``status`` is decided here, once:

    skipped        no check ran (a target that cannot give what the scenario needs)
    FAIL           a check of the system failed
    unknown        no check failed, but one could not tell (never a pass)
    no_experiment  only validity checks failed (a stampede that did not collide):
                   the run tested nothing; never green
    pass           every check that ran passed (or failed as a finding says it must:
                   a known-unsafe configuration's anomaly, each failure explained by
                   the finding's evidence)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from experiments.history import History

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["STATUSES", "Attempt", "Result", "RunStatus", "Verdict", "status_of", "unique_names"]

RunStatus = Literal["pass", "FAIL", "unknown", "no_experiment", "skipped"]
STATUSES: tuple[RunStatus, ...] = ("pass", "FAIL", "unknown", "no_experiment", "skipped")


@dataclass
class Verdict:
    """A check's judgement: passed True/False, or None when it could not tell (unknown).

    An unknown verdict never counts as a pass. A skipped one (``Verdict.skip``: the
    check could not run here, say against a target without database access) has
    ``passed=None`` and ``skipped=True``: neither passed nor failed, shown as skipped.
    """

    name: str
    passed: bool | None
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    #: The check judges the experiment, not the system (a stampede that did not
    #: collide): failing it alone makes the run ``no_experiment``, never a FAIL or a pass.
    validity: bool = False
    #: A failure a finding explains (``experiments.findings``): the anomaly a known-unsafe
    #: configuration must show, named with its evidence. Not a FAIL of the run, never a
    #: pass either (label ``finding``); only a failed verdict can carry one.
    finding: str | None = None

    @classmethod
    def skip(cls, name: str, reason: str) -> Verdict:
        """A check that did not run, with the reason why."""
        return cls(name, None, f"skipped: {reason}", {"reason": reason}, skipped=True)

    @property
    def label(self) -> str:
        if self.skipped:
            return "skipped"
        if self.finding is not None and self.passed is False:
            return "finding"
        return {True: "pass", False: "FAIL", None: "unknown"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "figures": self.figures,
        }
        if self.skipped:
            out["skipped"] = True
        if self.validity:
            out["validity"] = True
        if self.finding is not None:
            out["finding"] = self.finding
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            str(data["name"]),
            data.get("passed"),
            str(data.get("detail", "")),
            dict(data.get("figures") or {}),
            skipped=bool(data.get("skipped", False)),
            validity=bool(data.get("validity", False)),
            finding=data.get("finding"),
        )


def unique_names(verdicts: list[Verdict]) -> None:
    """Verdict names are unique within a result (``Result.verdict`` finds one by name):
    a second of one name is the lab's defect, refused here, where every result is made."""
    seen: dict[str, int] = {}
    for v in verdicts:
        seen[v.name] = seen.get(v.name, 0) + 1
    twice = sorted(n for n, k in seen.items() if k > 1)
    if twice:
        raise ValueError(f"checks named more than once in one result: {twice}")


def status_of(verdicts: list[Verdict]) -> RunStatus:
    """The status of a run (or one attempt) with these verdicts; see the module."""
    ran = [v for v in verdicts if not v.skipped]
    if not ran:
        return "skipped"
    # A failure its finding explains is the expected anomaly, not the system's FAIL.
    system = [v for v in ran if not v.validity and not (v.finding and v.passed is False)]
    if any(v.passed is False for v in system):
        return "FAIL"
    if any(v.passed is not True for v in system):
        return "unknown"
    if any(v.passed is not True for v in ran if v.validity):
        return "no_experiment"
    return "pass"


@dataclass
class Attempt:
    """One attempt of a run: its verdicts, kept whatever became of it (see pipeline)."""

    number: int
    prefix: str
    verdicts: list[Verdict]
    #: The validity figures (peak in flight of the stampede), when it had any.
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> RunStatus:
        return status_of(self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "prefix": self.prefix,
            "status": self.status,
            "figures": self.figures,
            "checks": [v.to_dict() for v in self.verdicts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            int(data["number"]),
            str(data.get("prefix", "")),
            [Verdict.from_dict(v) for v in data.get("checks", [])],
            dict(data.get("figures") or {}),
        )


@dataclass
class Result:
    """The outcome of one scenario run."""

    scenario: str
    seed: int
    layer: str
    strategy: str
    params: dict[str, Any]
    history: History
    verdicts: list[Verdict] = field(default_factory=list)
    #: Scenario figures: counts, final stock, start spread, latency quantiles, ...
    summary: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    duration_s: float = 0.0
    #: Every attempt of the run, the last (this Result's verdicts) included; one for
    #: a run that was not drawn again.
    attempts: list[Attempt] = field(default_factory=list)

    def __post_init__(self) -> None:
        unique_names(self.verdicts)

    @property
    def status(self) -> RunStatus:
        """pass / FAIL / unknown / no_experiment / skipped: see the module."""
        return status_of(self.verdicts)

    @property
    def passed(self) -> bool:
        """The run passed: every check that ran passed or is a finding's, and one ran."""
        return self.status == "pass"

    @property
    def failed(self) -> list[Verdict]:
        """Checks that ran and did not pass (failed or unknown), findings aside."""
        return [
            v
            for v in self.verdicts
            if v.passed is not True and not v.skipped and not (v.finding and v.passed is False)
        ]

    @property
    def findings(self) -> list[Verdict]:
        """Failures a finding explains: the anomaly shown, with its evidence."""
        return [v for v in self.verdicts if v.finding and v.passed is False]

    @property
    def skipped(self) -> list[Verdict]:
        """Checks that could not run here, each with its reason."""
        return [v for v in self.verdicts if v.skipped]

    def verdict(self, name: str) -> Verdict:
        for v in self.verdicts:
            if v.name == name:
                return v
        raise KeyError(f"no check named {name!r}; have {[v.name for v in self.verdicts]}")

    def outcomes(self) -> dict[str, dict[str, int]]:
        return self.history.counts()

    def verdict_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [{"check": v.name, "verdict": v.label, "detail": v.detail} for v in self.verdicts]
        )

    def to_dict(self) -> dict[str, Any]:
        """The scenario's entry of ``summary.json``."""
        return {
            "name": self.scenario,
            "layer": self.layer,
            "strategy": self.strategy,
            "seed": self.seed,
            "passed": self.passed,
            "status": self.status,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "params": self.params,
            "outcomes": self.outcomes(),
            "checks": [v.to_dict() for v in self.verdicts],
            "summary": self.summary,
            "attempts": [a.to_dict() for a in self.attempts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], history: History | None = None) -> Result:
        """The Result ``to_dict`` wrote (its history apart: ``history`` or empty)."""
        return cls(
            scenario=str(data["name"]),
            seed=int(data["seed"]),
            layer=str(data["layer"]),
            strategy=str(data["strategy"]),
            params=dict(data.get("params") or {}),
            history=history if history is not None else History(),
            verdicts=[Verdict.from_dict(v) for v in data.get("checks", [])],
            summary=dict(data.get("summary") or {}),
            started_at=str(data.get("started_at", "")),
            duration_s=float(data.get("duration_s", 0.0)),
            attempts=[Attempt.from_dict(a) for a in data.get("attempts", [])],
        )

    @classmethod
    def load(cls, path: Path | str) -> Result:
        """Read a ``*.result.json`` that ``save`` wrote, with its history beside it."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        stem = path.name.removesuffix(".result.json")
        hist = path.with_name(f"{stem}.history.jsonl")
        return cls.from_dict(data, History.load(hist) if hist.exists() else None)

    def save(self, out_dir: Path | str) -> Path:
        """Write ``<scenario>.history.jsonl`` and ``<scenario>.result.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{self.scenario}-{self.layer}"
        self.history.save(out / f"{stem}.history.jsonl")
        path = out / f"{stem}.result.json"
        # ASCII escapes, as in the history: a lone surrogate of hostile input cannot be
        # written as UTF-8.
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path
