"""Benchmark tests share one small cache of proxy data, away from the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _proxy_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "proxy-cache"
    monkeypatch.setenv("E3D_CACHE", str(cache))
    return cache
