"""bench.storage_writes: both settings timed, each on its own database in its own journal mode."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bench import storage_writes
from search import study as st


def test_each_setting_writes_its_own_database_and_the_report_compares_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage_writes.main(["--writes", "5", "--rounds", "2", "--search-trials", "0", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert len(re.findall(r"^round [12] (before|after) .*: +[\d.]+ ms per attribute write$", out, re.M)) == 4
    assert re.search(r"^ms per attribute write: before [\d.]+ ± [\d.]+ \(n=2\), after [\d.]+ ± [\d.]+ \(n=2\) .*: [\d.]+x$", out, re.M)
    for setting, mode in (("before", "delete"), ("after", "wal")):
        with sqlite3.connect(tmp_path / f"round2-{setting}" / "writes.db") as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == mode
    assert st.SQLITE_PRAGMAS == ("journal_mode=WAL", "synchronous=NORMAL")  # restored after the "before" runs


@pytest.mark.parametrize("flag", [["--search-trials", "-1"], ["--rounds", "0"], ["--writes", "x"]])
def test_bad_counts_are_one_line_errors(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        storage_writes.main(flag)
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
