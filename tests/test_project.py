"""Project-level promises: the README's commands are the ones CI runs, and the commands that the README, the docs
and the sources give name options that exist."""

from __future__ import annotations

import argparse
import re
from functools import cache
from pathlib import Path

import pytest

from e3d.cli import build_parser
from tests.bench.test_cli import OPTION, bench_options

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The commands of the README's first code block."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None, "README.md has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_and_test_commands() -> None:
    install, test = readme_commands()
    assert "pip install -c constraints.txt" in install and "e3d search" in install
    assert test.startswith(". .venv/bin/activate && ")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test = readme_commands()[1].removeprefix(". .venv/bin/activate && ")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, f"{test!r} is not a line of .ci/run"


PACKAGES = ("space", "profiler", "search", "analysis", "e3d", "bench")
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS = [*MARKDOWN, *[p for d in PACKAGES for p in sorted((ROOT / d).rglob("*.py"))]]
"""The README, the docs, and the packages' sources (their docstrings, help texts and messages)."""


def _command_lines() -> list[tuple[str, str]]:
    """(document, line) of the :data:`DOCUMENTS`, with lines continued by a backslash joined."""
    return [(d.name, line) for d in DOCUMENTS for line in re.sub(r"\\\n\s*", " ", d.read_text()).splitlines()]


def _e3d_options(parser: argparse.ArgumentParser, words: list[str]) -> set[str] | None:
    """The options of the subcommand of ``parser`` (e3d's) that ``words`` start with (a nested one such as ``data
    resize`` too); None where the first word is not a subcommand (prose such as "e3d is")."""
    known, depth = set(), 0
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser, depth = subs[0].choices[word], depth + 1
        known |= {o for a in parser._actions for o in a.option_strings}
    return known | {"--help"} if depth else None


def test_every_option_the_documents_give_a_command_exists(capsys: pytest.CaptureFixture[str]) -> None:
    unknown, commands, parser, benches = [], 0, build_parser(), {}
    for doc, line in _command_lines():
        for m in re.finditer(r"\b(e3d|python -m bench\.(\w+)) ([^`|;&#)]*)", line):
            words, bench = m.group(3).split(), m.group(2)
            if bench and bench not in benches:
                benches[bench] = bench_options(bench, capsys) | {"--help"}
            known = benches[bench] if bench else _e3d_options(parser, words)
            commands += known is not None
            unknown += [f"{doc}: {m.group(0)[:60]}: {o}" for o in OPTION.findall(m.group(3)) if known is not None and o not in known]
    assert commands > 100 and not unknown, unknown


@cache
def _anchors(markdown: Path) -> set[str]:
    """The link targets of a markdown file's headings, as GitHub spells them."""
    headings = re.findall(r"^#+ (.*)$", markdown.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_of_the_readme_and_docs_resolves() -> None:
    broken = []
    for doc in MARKDOWN:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for link in re.findall(r"\]\((?!https?://)([^)\s]+)\)", text):
            path, _, anchor = link.partition("#")
            target = doc.parent / path if path else doc
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target.resolve())):
                broken.append(f"{doc.name}: {link}")
    assert not broken, broken
