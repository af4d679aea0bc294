"""What a network COSTS: multiply-adds, parameters, paper-convention FLOPs, memory and latency."""

from profiler.costs import Cost, layer_cost
from profiler.counting import Counts, OpStat, count_module, count_spec
from profiler.optimize import OptimizedModel, fold_batchnorm, optimize_for_inference, relative_error

__all__ = [
    "Cost",
    "Counts",
    "OpStat",
    "OptimizedModel",
    "count_module",
    "count_spec",
    "fold_batchnorm",
    "layer_cost",
    "optimize_for_inference",
    "relative_error",
]
