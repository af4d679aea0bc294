"""bench.counting: candidates from the real search space, and a small run end to end."""

from __future__ import annotations

import random
import re

import pytest

from bench import counting
from search.searchspace import FAMILIES, SPACE, spec_from_params


def test_candidates_come_from_the_search_space_and_build() -> None:
    params = counting.sample_candidates(60, FAMILIES, random.Random(1))
    assert {p["family"] for p in params} == set(FAMILIES)
    for p in params:
        family = p["family"]
        lo, hi = SPACE[family].width
        assert lo <= p[f"{family}.width_mult"] <= hi
        assert spec_from_params(p).family == family


def test_a_small_run_prints_every_rate_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    counting.main(["--specs", "600", "--cold", "100", "--families", "mobilenetv2", "shufflenet"])
    out = capsys.readouterr().out
    rates = {m[1]: float(m[2].replace(",", "")) for m in re.finditer(r"^  (uncached|cold|steady|repeat) +([\d,]+) specs/s CPU", out, re.M)}
    assert set(rates) == {"uncached", "cold", "steady", "repeat"} and min(rates.values()) > 0
    assert "candidates of mobilenetv2, shufflenet" in out
    assert re.search(r"(meets|MISSES) the 10,000 specs/s target", out)
