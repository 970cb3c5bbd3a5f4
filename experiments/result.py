"""What an experiment returns: its history, the checks' verdicts and a summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.history import History

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Result", "Verdict"]


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

    @classmethod
    def skip(cls, name: str, reason: str) -> Verdict:
        """A check that did not run, with the reason why."""
        return cls(name, None, f"skipped: {reason}", {"reason": reason}, skipped=True)

    @property
    def label(self) -> str:
        if self.skipped:
            return "skipped"
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
        return out


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

    @property
    def passed(self) -> bool:
        """Every check that ran passed, and at least one ran (skipped ones aside)."""
        ran = [v for v in self.verdicts if not v.skipped]
        return bool(ran) and all(v.passed is True for v in ran)

    @property
    def failed(self) -> list[Verdict]:
        """Checks that ran and did not pass (failed or unknown)."""
        return [v for v in self.verdicts if v.passed is not True and not v.skipped]

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
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "params": self.params,
            "outcomes": self.outcomes(),
            "checks": [v.to_dict() for v in self.verdicts],
            "summary": self.summary,
        }

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
