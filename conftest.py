"""The chaos gate, for tests and notebooks alike, and the fault fixtures' plugins.

Chaos tests and notebooks are kept out of a bare ``pytest`` run (the original suite
did the same with a build tag) and run with ``--chaos`` or ``CI=true``, as
``make test`` and CI do. Notebook items collected by nbmake carry the marker too.
"""

from __future__ import annotations

import os

import pytest

# Fixtures for every test (docs/testing.md): the faults (``proxy``, ``backends``,
# ``own_database``, ``outage``) and the in-process transport (``in_process``). pytest
# takes ``pytest_plugins`` from this, the rootdir's conftest, only (a nested conftest
# declaring it is an error).
pytest_plugins = ["tests.fix_asgi", "tests.fix_backends", "tests.fix_proxy", "tests.fix_restart"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos",
        action="store_true",
        default=False,
        help="run the chaos tests and notebooks (also on when CI=true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """One timeout, stated once: pyproject's ``timeout`` (pytest-timeout, per test).

    nbmake has a per-cell timeout of its own (``--nbmake-timeout``, default 300); a
    notebook is one test, so its cells can never use more than the test's timeout, and
    a larger nbmake value is silently cut short (it once said 900 while pytest-timeout
    stopped every notebook at 300). nbmake takes the test timeout instead; ``--timeout``
    on the command line changes both.
    """
    timeout = config.getoption("timeout", None) or config.getini("timeout")
    if timeout and hasattr(config.option, "nbmake_timeout"):
        config.option.nbmake_timeout = int(float(timeout))


def _chaos_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--chaos")) or os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.path).endswith(".ipynb"):
            item.add_marker(pytest.mark.chaos)
    if _chaos_enabled(config):
        return
    skip = pytest.mark.skip(reason="chaos test: give --chaos or set CI=true")
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)
