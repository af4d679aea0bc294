"""Search tests: the arguments of a tiny search (the cache of proxy data is set for every test in tests/conftest.py)."""

from __future__ import annotations

TINY = [
    "--families", "mobilenet,mobilenetv2", "--budget-mflops", "60", "--proxy-clip", "8x32x32",
    "--train-samples", "32", "--val-samples", "16", "--epochs", "1", "--batch-size", "8", "--test-samples", "16",
    "--final-seeds", "1", "--top-k", "1", "--quiet", "--jobs", "1",
]  # fmt: skip
"""A search that trains each candidate for seconds (mobilenetv2 0.2x is the one baseline under 60 M) and
finalizes small: its best searched network and baseline, one seed each, on 16 test videos (finalization's
defaults, 3 networks and the baselines x 3 seeds on 300 videos, take minutes on a busy machine), in one
worker (a test in another process does not see tests/conftest.py's ``--jobs auto`` of one)."""
