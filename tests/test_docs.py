"""The pages hold to the code: every link resolves, every command parses, every make target exists.

Read from ``README.md`` and ``docs/*.md``: relative links (and their anchors, GitHub's
heading slugs), the ``coupon-chaos ...`` lines of fenced blocks (parsed by the CLI's
own parser, ``experiments.cli.build_parser``), and ``make <target>`` in code. Each
finder takes a path, so the tests below can show it fails on a planted mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from experiments.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES: tuple[Path, ...] = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`[^`]*`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MAKE = re.compile(r"(?<![\w/.-])make\s+([A-Za-z][\w-]*)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
# Where one shell command ends and another (or a redirect) begins.
_SHELL_STOPS = frozenset({"&", "&&", "|", "||", ";", ">", ">>", "<", "2>"})


def _lines(path: Path) -> Iterator[tuple[bool, str, str]]:
    """Each line of a page as (inside a fenced block, the block's language, the line)."""
    fenced, language = False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            language = line.strip().strip("`~").strip() if fenced else ""
            continue
        yield fenced, language, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors a page's headings give (a repeated heading gets ``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for fenced, _, line in _lines(path):
        m = None if fenced else _HEADING.match(line)
        if m is None:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def links(path: Path) -> list[str]:
    """Every link target of a page's prose (not in code)."""
    return [
        target
        for fenced, _, line in _lines(path)
        if not fenced
        for target in _LINK.findall(_CODE_SPAN.sub("", line))
    ]


def broken_links(path: Path, base: Path | None = None) -> list[str]:
    """The relative links of ``path`` that name no file, or no heading of it.

    ``base``: where the links are resolved from (default: the page's own folder; a
    copy of a page elsewhere resolves its links where the original lies)."""
    base = base or path.parent
    broken: list[str] = []
    for target in links(path):
        if _SCHEME.match(target):
            continue  # a web address: not this test's to reach
        file_part, _, anchor = target.partition("#")
        page = (base / file_part).resolve() if file_part else path
        if not page.exists():
            broken.append(f"{target}: no file {page}")
        elif anchor and page.suffix == ".md" and anchor not in anchors(page):
            broken.append(f"{target}: no heading #{anchor} in {page.name}")
    return broken


def cli_commands(path: Path) -> list[list[str]]:
    """The arguments of each ``coupon-chaos`` command in the page's fenced blocks.

    A line ending in a backslash goes on; comments, ``$(...)``, and whatever follows a
    shell operator (``&``, ``|``, ``>``) are not the command's."""
    commands: list[list[str]] = []
    pending = ""
    for fenced, language, line in _lines(path):
        if not fenced or language in ("python", "py", "json", "sql", "text"):
            pending = ""
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text, pending = pending + line, ""
        if "coupon-chaos" not in text:
            continue
        text = text.replace("$(", " ").replace(")", " ")
        words = shlex.split(text, comments=True)
        for i, word in enumerate(words):
            if word.endswith("coupon-chaos"):
                argv: list[str] = []
                for w in words[i + 1 :]:
                    if w in _SHELL_STOPS:
                        break
                    argv.append(w)
                commands.append(argv)
    return commands


@cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def _subcommands() -> set[str]:
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def bad_commands(path: Path) -> list[str]:
    """The page's ``coupon-chaos`` commands the CLI's parser refuses, with its message."""
    bad: list[str] = []
    for argv in cli_commands(path):
        shown = " ".join(["coupon-chaos", *argv])
        if "-h" in argv or "--help" in argv:
            # --help exits by design: the command named must exist, that is all.
            words = [w for w in argv if not w.startswith("-")]
            if words and words[0] not in _subcommands():
                bad.append(f"{shown}: no command {words[0]!r}")
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                _parser().parse_args(argv)
        except SystemExit as exit_:
            bad.append(f"{shown}: exit {exit_.code}: {err.getvalue().strip()}")
    return bad


@cache
def make_targets(makefile: Path = ROOT / "Makefile") -> frozenset[str]:
    """The Makefile's targets: rules and .PHONY names."""
    found: set[str] = set()
    for line in makefile.read_text(encoding="utf-8").splitlines():
        if line.startswith(".PHONY:"):
            found.update(line.split(":", 1)[1].split())
            continue
        m = re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)", line)
        if m:
            found.add(m.group(1))
    return frozenset(found)


def unknown_make_targets(path: Path, makefile: Path = ROOT / "Makefile") -> list[str]:
    """``make <target>`` named in the page's code (spans and fenced blocks) that the
    Makefile does not have."""
    named: list[str] = []
    for fenced, _, line in _lines(path):
        # A fenced line without its comment; in prose, only what is in code spans.
        code = [line.split("#", 1)[0]] if fenced else _CODE_SPAN.findall(line)
        for text in code:
            named += _MAKE.findall(text.strip("`"))
    return sorted({t for t in named if t not in make_targets(makefile)})


def _page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- the pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_command_parses(page: Path) -> None:
    assert bad_commands(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_make_target_exists(page: Path) -> None:
    assert unknown_make_targets(page) == []


def test_the_readme_is_short_and_leads_to_every_page() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 150
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in links(readme)}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_pages_name_commands_at_all() -> None:
    """The finders find: an empty result above must not come from finding nothing."""
    assert len(cli_commands(ROOT / "README.md")) >= 3
    assert sum(len(links(p)) for p in PAGES) >= 20
    assert {"report", "test", "install", "unit", "check"} <= make_targets()


# -- the finders fail on a planted mistake -------------------------------------------------


def test_a_planted_broken_link_is_found(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    copy.write_text(text, encoding="utf-8")
    assert broken_links(copy, base=ROOT) == []  # the copy itself is clean
    copy.write_text(
        text + "\n[gone](docs/nosuch.md) and [moved](docs/lab.md#no-such-heading)\n",
        encoding="utf-8",
    )
    found = broken_links(copy, base=ROOT)
    assert len(found) == 2
    assert found[0].startswith("docs/nosuch.md: no file")
    assert found[1] == "docs/lab.md#no-such-heading: no heading #no-such-heading in lab.md"


def test_a_planted_wrong_command_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\n"
        ".venv/bin/coupon-chaos run flash_sale --layer http --seed 7   # fine\n"
        ".venv/bin/coupon-chaos nosuch --seed 7\n"
        ".venv/bin/coupon-chaos run flash_sale --layer sideways\n"
        ".venv/bin/coupon-chaos sweep flash_sale \\\n    --seeds 2 --no-such-option\n"
        ".venv/bin/coupon-chaos nohelp --help\n"
        ".venv/bin/coupon-chaos serve --port 8080 &   # what follows & is not its\n"
        "```\n",
        encoding="utf-8",
    )
    found = bad_commands(page)
    assert len(found) == 4, found
    assert "coupon-chaos nosuch --seed 7: exit 2" in found[0]
    assert "--layer: invalid choice: 'sideways'" in found[1]
    assert "unrecognized arguments: --no-such-option" in found[2]
    assert found[3] == "coupon-chaos nohelp --help: no command 'nohelp'"


def test_a_planted_make_target_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `make unit`, then `make nosuch`; as `make test` and CI do.\n\n"
        "```sh\nmake report\nmake deploy   # no such target\n```\n",
        encoding="utf-8",
    )
    assert unknown_make_targets(page) == ["deploy", "nosuch"]


def test_slugs_are_githubs() -> None:
    assert slug("Against a deployed service (`--target`)") == "against-a-deployed-service---target"
    assert slug("Multi-row rules: campaigns, bundles") == "multi-row-rules-campaigns-bundles"
    assert "which-file-to-change" in anchors(ROOT / "docs" / "lab.md")
