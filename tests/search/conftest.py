"""Search tests share one small cache of proxy data."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = [
    "--families", "mobilenet,mobilenetv2", "--budget-mflops", "60", "--proxy-clip", "8x32x32",
    "--train-samples", "32", "--val-samples", "16", "--epochs", "1", "--batch-size", "8", "--quiet",
]  # fmt: skip
"""A search that trains each candidate for seconds (mobilenetv2 0.2x is the one baseline under 60 M)."""


@pytest.fixture(autouse=True)
def _proxy_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "proxy-cache"
    monkeypatch.setenv("E3D_CACHE", str(cache))
    return cache
