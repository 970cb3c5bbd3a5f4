"""The arrows between the lab's modules run one way: read from the source, not assumed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, type-only imports included (a circle all the same)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _reaches(importer: str, target: str) -> bool:
    return any(m == target or m.startswith(target + ".") for m in _imports(importer))


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("experiments.suite_html", "experiments.suite"),
        ("experiments.suite_report", "experiments.suite"),
        ("experiments.suite_report", "experiments.suite_html"),
        ("experiments.lab", "experiments.faults"),
        ("experiments.checks_leaks", "experiments.faults"),
        ("experiments.checks", "experiments.faults"),
        ("experiments.checks_leaks", "experiments.lab"),
        # The lab context starts things; the pipeline alone knows faults and checks.
        ("experiments.lab", "experiments.pipeline"),
        ("experiments.checks", "experiments.pipeline"),
        ("experiments.spec", "experiments.lab"),
        ("experiments.spec", "experiments.pipeline"),
        ("experiments.result", "experiments.pipeline"),
        ("experiments.findings", "experiments.pipeline"),
    ],
)
def test_no_import_against_the_arrow(importer: str, forbidden: str) -> None:
    assert not _reaches(importer, forbidden), f"{importer} imports {forbidden}"


def test_the_lab_takes_its_leak_check_from_the_checks_side() -> None:
    assert _reaches("experiments.lab", "experiments.checks_leaks")
    assert not (ROOT / "experiments" / "faults" / "leaks.py").exists()
