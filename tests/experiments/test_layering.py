"""The import contract, read from the source of every module of coupon_core and experiments.

DESIGN.md draws the arrows: notebooks -> experiments -> coupon_core -> PostgreSQL,
one way only. Held here, for every module, over its imports as ``ast`` finds them
(top level and inside functions, type-only ones included):

    one way         coupon_core never imports experiments
    no circle       the graph of imports that run at import time (top level, not under
                    ``TYPE_CHECKING``) has no strongly connected component of two or
                    more modules; nor has the graph of every import, function-local
                    ones included (a circle a local import hides is a circle still)
    no private      no module imports a ``_name`` from another module, nor a ``_module``
                    of another package (a package's ``_module`` is for that package)
    layers          within experiments, a module imports only its own layer or those
                    below (``LAYERS``); lab and faults are peers that never meet

An import of a package's submodule (``from experiments import suite``) is an edge to
the submodule, not to the package's ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES: tuple[str, ...] = ("coupon_core", "experiments")

#: experiments' layers, top first: a module may import its own layer and those below.
#: A part is a top-level module or subpackage of experiments (its submodules with it).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "commands"),
    (
        "suite",
        "sweep",
        "sweep_report",
        "sweep_tables",
        "playground",
        "detection",
        "exposure",
        "params",
        "cli_checks",
        "bench",
    ),
    ("suite_html", "compare"),
    ("report", "suite_report"),
    ("scenarios", "locust"),
    ("pipeline", "replica_checks"),
    ("lab", "faults"),
    (
        "clients",
        "runner",
        "checks",
        "checks_leaks",
        "linearizability",
        "elle",
        "findings",
        "run_record",
        "figures",
    ),
    (
        "errors",
        "spec",
        "plans",
        "history",
        "contract",
        "result",
        "mutants",
        "hostile",
        "hostile_tables",
        "waits",
    ),
    ("",),  # experiments/__init__.py: a docstring
)
#: Parts of one layer that must not import each other: the lab context starts things,
#: the faults break them; the pipeline alone knows both.
PEERS: tuple[tuple[str, str], ...] = (("lab", "faults"),)

#: Private names imported from another module, each with its reason. Empty: every
#: helper shared across modules is public where it is defined.
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (the submodule, where a name is one)
    name: str | None  # the name taken from it (None: the module itself)
    top_level: bool  # runs at import time
    line: int


def modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name -> file."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _runs_at_import(tree: ast.Module) -> set[int]:
    """The ids of the import nodes that run at import time (not under TYPE_CHECKING,
    not inside a function)."""
    found: set[int] = set()

    def visit(body: Iterable[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.add(id(node))
            elif isinstance(node, ast.If):
                test = node.test
                if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
                ):
                    visit(node.orelse)
                else:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (node.body, *(h.body for h in node.handlers)):
                    visit(part)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                visit(node.body)

    visit(tree.body)
    return found


def imports_of(name: str, path: Path, known: Mapping[str, Path]) -> list[Import]:
    """Every import of module ``name`` (at ``path``), resolved against ``known``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    at_import = _runs_at_import(tree)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):
        top = id(node) in at_import
        if isinstance(node, ast.Import):
            found += [Import(name, a.name, None, top, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, *([node.module] if node.module else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:
                    found.append(Import(name, sub, None, top, node.lineno))
                else:
                    found.append(Import(name, base, a.name, top, node.lineno))
    return found


def _owner(target: str, known: Mapping[str, Path]) -> str | None:
    """The known module ``target`` names (itself, or its nearest known parent)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def graph(
    known: Mapping[str, Path], *, top_level_only: bool, found: Iterable[Import] | None = None
) -> dict[str, set[str]]:
    """Module -> the known modules it imports."""
    edges: dict[str, set[str]] = {m: set() for m in known}
    every = found if found is not None else all_imports(known)
    for imp in every:
        if top_level_only and not imp.top_level:
            continue
        owner = _owner(imp.target, known)
        if owner is not None and owner != imp.importer:
            edges[imp.importer].add(owner)
    return edges


def circles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def all_imports(known: Mapping[str, Path]) -> list[Import]:
    return [imp for name, path in known.items() for imp in imports_of(name, path, known)]


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def private_imports(found: Iterable[Import]) -> list[str]:
    """Imports of a private name from another module, or of another package's private
    module: ``importer:line: target.name``."""
    bad: list[str] = []
    for imp in found:
        if imp.name is not None and _private(imp.name):
            if (imp.importer, f"{imp.target}.{imp.name}") not in PRIVATE_ALLOWED:
                bad.append(f"{imp.importer}:{imp.line}: {imp.target}.{imp.name}")
            continue
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            if _private(part):
                package = ".".join(parts[:i])
                inside = imp.importer == package or imp.importer.startswith(package + ".")
                if not inside:
                    bad.append(f"{imp.importer}:{imp.line}: {imp.target} (private to {package})")
                break
    return bad


def _part(module: str) -> str | None:
    """experiments.faults.proxy -> faults; experiments -> ''; coupon_core.x -> None."""
    if module == "experiments":
        return ""
    if module.startswith("experiments."):
        return module.split(".")[1]
    return None


def layer_of(part: str) -> int:
    for i, layer in enumerate(LAYERS):
        if part in layer:
            return i
    raise LookupError(f"experiments.{part} is in no layer: place it in LAYERS of {__file__}")


def against_the_layers(found: Iterable[Import], known: Mapping[str, Path]) -> list[str]:
    """Imports within experiments that reach up a layer, or across to a peer."""
    bad: list[str] = []
    for imp in found:
        owner = _owner(imp.target, known)
        here, there = _part(imp.importer), None if owner is None else _part(owner)
        if here is None or there is None or here == there:
            continue
        if layer_of(there) < layer_of(here):
            bad.append(f"{imp.importer}:{imp.line}: imports {owner}, a layer above it")
        elif (here, there) in PEERS or (there, here) in PEERS:
            bad.append(f"{imp.importer}:{imp.line}: imports {owner}, its peer")
    return bad


# -- the contract --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def known() -> dict[str, Path]:
    return modules()


@pytest.fixture(scope="module")
def found(known: dict[str, Path]) -> list[Import]:
    return all_imports(known)


def test_the_walk_sees_every_module_and_its_local_imports(
    known: dict[str, Path], found: list[Import]
) -> None:
    assert {"coupon_core.service", "experiments.pipeline", "experiments.faults.proxy"} <= set(known)
    assert len(known) > 150
    # The pipeline imports the backing-off load inside a function: the walk sees it.
    assert any(
        i.importer == "experiments.pipeline"
        and i.target == "experiments.faults.loads"
        and not i.top_level
        for i in found
    )


def test_coupon_core_never_imports_experiments(found: list[Import]) -> None:
    bad = [
        f"{i.importer}:{i.line}: {i.target}"
        for i in found
        if i.importer.split(".")[0] == "coupon_core" and i.target.split(".")[0] == "experiments"
    ]
    assert bad == []


def test_no_import_circle_at_import_time(known: dict[str, Path], found: list[Import]) -> None:
    assert circles(graph(known, top_level_only=True, found=found)) == []


def test_no_import_circle_even_through_local_imports(
    known: dict[str, Path], found: list[Import]
) -> None:
    assert circles(graph(known, top_level_only=False, found=found)) == []


def test_no_private_name_taken_from_another_module(found: list[Import]) -> None:
    assert private_imports(found) == []


def test_every_part_of_experiments_has_a_layer(known: dict[str, Path]) -> None:
    parts = {p for m in known if (p := _part(m)) is not None}
    for part in parts:
        layer_of(part)
    declared = {p for layer in LAYERS for p in layer}
    assert sorted(declared - parts) == [], "a layer names a part that does not exist"


def test_imports_follow_the_layers(known: dict[str, Path], found: list[Import]) -> None:
    assert against_the_layers(found, known) == []


def test_the_lab_takes_its_leak_check_from_the_checks_side(found: list[Import]) -> None:
    assert any(
        i.importer == "experiments.lab" and i.target == "experiments.checks_leaks" for i in found
    )
    assert not (ROOT / "experiments" / "faults" / "leaks.py").exists()


# The pairs test_layering pinned before the contract: each is forbidden by it still.
_PINNED = [
    ("experiments.suite_html", "experiments.suite"),
    ("experiments.suite_report", "experiments.suite"),
    ("experiments.suite_report", "experiments.suite_html"),
    ("experiments.lab", "experiments.faults"),
    ("experiments.checks_leaks", "experiments.faults"),
    ("experiments.checks", "experiments.faults"),
    ("experiments.checks_leaks", "experiments.lab"),
    ("experiments.lab", "experiments.pipeline"),
    ("experiments.checks", "experiments.pipeline"),
    ("experiments.spec", "experiments.lab"),
    ("experiments.spec", "experiments.pipeline"),
    ("experiments.result", "experiments.pipeline"),
    ("experiments.findings", "experiments.pipeline"),
]


@pytest.mark.parametrize(("importer", "forbidden"), _PINNED)
def test_the_contract_forbids_every_pair_once_pinned(
    importer: str, forbidden: str, known: dict[str, Path]
) -> None:
    planted = [Import(importer, forbidden, None, False, 1)]
    assert against_the_layers(planted, known) != []


# -- the checker fails on a plant ----------------------------------------------------------


def test_a_planted_circle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(edges) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_a_planted_circle_in_source_is_found(tmp_path: Path) -> None:
    """Two modules that import each other, one of them only inside a function: a circle
    of every import, none at import time."""
    pkg = tmp_path / "experiments"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "spec.py").write_text("def f():\n    from experiments.pipeline import run\n")
    (pkg / "pipeline.py").write_text("from experiments import spec\n\ndef run(): ...\n")
    known = modules(tmp_path, ("experiments",))
    found = all_imports(known)
    assert circles(graph(known, top_level_only=True, found=found)) == []
    assert circles(graph(known, top_level_only=False, found=found)) == [
        ["experiments.pipeline", "experiments.spec"]
    ]
    # And the layers: spec (words) reaches up to the pipeline.
    assert against_the_layers(found, known) == [
        "experiments.spec:2: imports experiments.pipeline, a layer above it"
    ]


def test_planted_private_imports_are_found(tmp_path: Path) -> None:
    pkg = tmp_path / "coupon_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper(): ...\n")
    (pkg / "_impl.py").write_text("def shared(): ...\n")
    (pkg / "b.py").write_text(
        "from coupon_core.a import _helper\nfrom coupon_core._impl import shared\n"
    )
    other = tmp_path / "experiments"
    other.mkdir()
    (other / "__init__.py").write_text("")
    (other / "c.py").write_text("from coupon_core._impl import shared\n")
    known = modules(tmp_path)
    assert private_imports(all_imports(known)) == [
        "coupon_core.b:1: coupon_core.a._helper",
        "experiments.c:1: coupon_core._impl (private to coupon_core)",
    ]


def test_planted_imports_against_the_layers_are_found(known: dict[str, Path]) -> None:
    planted = [
        Import("experiments.checks.history", "experiments.faults.proxy", "TcpProxy", False, 7),
        Import("experiments.lab", "experiments.faults", "PoolHog", True, 9),
        Import("experiments.pipeline", "experiments.lab", "open_lab", True, 3),  # allowed
    ]
    assert against_the_layers(planted, known) == [
        "experiments.checks.history:7: imports experiments.faults.proxy, a layer above it",
        "experiments.lab:9: imports experiments.faults, its peer",
    ]
