"""Benchmarks. Importing the package sets malloc up as the e3d CLI does (:func:`profiler.allocator.keep_freed_memory`;
``E3D_MALLOC=system`` leaves the system's allocator as it is), so that they time what e3d runs."""

from profiler.allocator import keep_freed_memory

keep_freed_memory()
