"""Benchmarks. Importing the package sets malloc up as the e3d CLI does (:func:`profiler.allocator.keep_freed_memory`;
``E3D_MALLOC=system`` leaves the system's allocator as it is), so that they time what e3d runs."""

import sys

from profiler.allocator import AllocatorError, keep_freed_memory

try:
    keep_freed_memory()
except AllocatorError as e:  # one line and exit 2, as the e3d command does
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
