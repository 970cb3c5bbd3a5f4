"""Notebook parameters from the command line: ``-p name=value``, typed like the notebook's own.

Papermill's convention (``-p NAME VALUE``, values typed by what they look like), written
``-p name=value``: the value is read as a Python literal (``200``, ``1.5``, ``True``,
``"x"``, ``(1, 2)``) and must have the type of the default in the notebook's
``parameters`` cell: an ``int`` parameter takes an int, a ``float`` one an int or a
float, a ``str`` one any text (quotes optional), a ``None`` default any literal.
Wrong names and wrong values are usage errors naming what is allowed; values out of
the range their scenario declares (``RANGES``) are refused here too, before any work.

A notebook run by papermill directly (``papermill nb.ipynb out.ipynb -p users abc``)
gets the same judgement from its first cell (``check``), in the same words: the CLI
says ``-p users=abc: users takes an int, like 50``, the notebook
``SpecError: users=abc: users takes an int, like 50``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from experiments.errors import SpecError, UsageError

__all__ = [
    "RESERVED",
    "assignments",
    "check",
    "coerce",
    "parse_assignments",
    "resolve",
    "type_name",
]

#: Parameters the suite sets itself, and the option that sets each.
RESERVED: dict[str, str] = {
    "seed": "--seed",
    "layer": "--layer",
    "database_url": "--database-url",
    "out_dir": "--results",
    "target": "--target",
    "cleanup": "--cleanup",
}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


def type_name(default_source: str) -> str:
    """The type a parameter takes, from its default's source text (``50`` -> ``int``)."""
    value = _literal(default_source)
    if value is _NOT_LITERAL:
        return "any"
    if value is None:
        return "any (default None)"
    return type(value).__name__


def parse_assignments(texts: Iterable[str]) -> dict[str, str]:
    """``["users=200", "stock=3"]`` -> ``{"users": "200", "stock": "3"}`` (values as text)."""
    found: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"-p {text}: expected NAME=VALUE, e.g. -p users=200")
        if name in RESERVED:
            raise UsageError(f"-p {name}: set it with {RESERVED[name]}, not -p")
        if name in found and found[name] != value.strip():
            raise UsageError(
                f"-p {name}: given twice ({found[name]} and {value.strip()}): give one"
            )
        found[name] = value.strip()
    return found


def coerce(name: str, text: str, default_source: str) -> Any:
    """``text`` as the type of the parameter whose default reads ``default_source``."""
    default = _literal(default_source)
    value = _literal(text)
    if default is _NOT_LITERAL or default is None:
        return text if value is _NOT_LITERAL else value
    if isinstance(default, str):
        return value if isinstance(value, str) else text
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif value is not _NOT_LITERAL and type(value) is type(default):
        return value
    raise UsageError(f"-p {_wrong_type(name, text, default_source)}")


def _wrong_type(name: str, shown: str, default_source: str) -> str:
    wanted = type_name(default_source)
    article = "an" if wanted[:1] in "aeiou" else "a"
    return f"{name}={shown}: {name} takes {article} {wanted}, like {default_source}"


def _fits(value: Any, default: Any) -> bool:
    """Whether a typed ``value`` has the type of ``default`` (as ``coerce`` would make it)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return type(value) is type(default)


def check(scenario: str, **values: Any) -> None:
    """A notebook's first cell: its parameters as papermill injected them, judged as the
    CLI judges ``-p`` (each the type of its default, within its declared range).

    Raises ``SpecError`` with the CLI's line without its ``-p``: ``users=abc: users
    takes an int, like 50``. Names the scenario does not take (``out_dir``) pass."""
    from experiments.scenarios import SCENARIOS
    from experiments.spec import COMMON_DEFAULTS, COMMON_FIELDS

    chosen = SCENARIOS[scenario]
    defaults = {**COMMON_DEFAULTS, **chosen.common, **chosen.defaults}
    for name, value in values.items():
        if name in defaults and not _fits(value, defaults[name]):
            shown = value if isinstance(value, str) else repr(value)
            raise SpecError(_wrong_type(name, shown, repr(defaults[name])))
    chosen.spec(**{k: v for k, v in values.items() if k in COMMON_FIELDS or k in chosen.defaults})


def resolve(
    given: Mapping[str, str],
    declared: Mapping[str, Mapping[str, str]],
) -> dict[str, dict[str, Any]]:
    """Per notebook, the typed values of the ``given`` parameters it declares.

    ``declared`` maps a scenario to its parameters' default source texts. A name no
    chosen notebook declares is an error listing the names they do.
    """
    known = sorted({p for params in declared.values() for p in params} - set(RESERVED))
    for name in given:
        if not any(name in params for params in declared.values()):
            scenarios = ", ".join(declared) or "the chosen notebooks"
            raise UsageError(
                f"-p {name}: no parameter {name!r} in {scenarios}; allowed: {', '.join(known)}"
            )
    typed = {
        scenario: {
            name: coerce(name, text, params[name]) for name, text in given.items() if name in params
        }
        for scenario, params in declared.items()
    }
    _check_ranges(typed)
    return typed


def _check_ranges(typed: Mapping[str, Mapping[str, Any]]) -> None:
    """Each value within the range its scenario declares (``RunSpec``'s ranges): refused
    here, before any work, with the same words the spec uses."""
    from experiments.scenarios import SCENARIOS
    from experiments.spec import SpecError

    for scenario, values in typed.items():
        if scenario in SCENARIOS and values:
            try:
                SCENARIOS[scenario].spec(**values)
            except SpecError as err:
                raise UsageError(f"-p {err}") from None


def assignments(values: Mapping[str, Any]) -> Sequence[str]:
    """``-p`` words that set ``values`` again (for a rerun command)."""
    words: list[str] = []
    for name, value in values.items():
        text = value if isinstance(value, str) else repr(value)
        words += ["-p", f"{name}={text}"]
    return words
