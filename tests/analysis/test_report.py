"""Text tables and summary lines: alignment, empty inputs, what the budget line says."""

from __future__ import annotations

import dataclasses
import datetime
import re

import pandas as pd

from analysis import from_study
from analysis.report import depth_text, pareto_text, summary_markdown, table, width_text
from tests.analysis.helpers import MIXED, T, make_study


def test_table_aligns_numbers_right_and_text_left() -> None:
    df = pd.DataFrame({"name": ["a", "bbb"], "value": [1.5, 10.25]})
    text = table(df, [("name", lambda r: str(r["name"])), ("value", lambda r: f"{r['value']:.2f}")])
    assert text.splitlines() == ["| name | value |", "|------|------:|", "| a    |  1.50 |", "| bbb  | 10.25 |"]


def test_empty_inputs_say_what_is_missing() -> None:
    df = from_study(make_study([T("mobilenet", 2.0, None, feasible=False)])).trials
    assert pareto_text(df) == "(no finished trial with a known multiply-adds per clip)"
    assert width_text(df) == "(no finished trials)"


def test_budget_line_tells_unknown_from_none() -> None:
    results = from_study(make_study(MIXED, budget_mflops=None))  # a sweep stores no multiply-add budget
    assert "Budget: none on multiply-adds in the study's settings" in summary_markdown(results, paper=False)
    unknown = dataclasses.replace(results, config=None)  # a bare trials.csv
    assert "Budget: unknown (give --budget-mflops" in summary_markdown(unknown, paper=False)
    given = dataclasses.replace(results, budget_mflops=80.0)
    assert "Budget: multiply-adds <= 80 M per 16x112x112 clip." in summary_markdown(given, paper=False)


def test_the_trials_line_counts_every_trial_by_source_and_names_the_cpu() -> None:
    results = from_study(make_study(MIXED))
    df = results.trials.assign(cpu="Some CPU")
    df.loc[df.index[-1], "source"] = None  # a lagged search's surplus trial records no source
    text = summary_markdown(dataclasses.replace(results, trials=df), paper=False)
    by_source = re.search(r"\(by source: (.*?)\)", text)
    assert by_source is not None and sum(int(n.split()[0]) for n in by_source.group(1).split(", ")) == len(df)  # was one short
    assert f"Trials trained on Some CPU; drawn {datetime.date.today():%Y-%m-%d}." in text  # was neither CPU nor date


def test_the_depth_table_prints_each_cost_as_the_other_tables_do() -> None:
    text = depth_text(from_study(make_study(MIXED)).trials)
    assert "|   93.7 |" in text and "|  232.4 |" in text and "|       71.7 |" in text  # was 93.72 beside 232.4 (.4g)
