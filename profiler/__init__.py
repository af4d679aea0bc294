"""What a network COSTS: multiply-adds, parameters, paper-convention FLOPs, memory and latency."""

from profiler.costs import Cost, layer_cost
from profiler.counting import Counts, OpStat, count_module, count_spec

__all__ = ["Cost", "Counts", "OpStat", "count_module", "count_spec", "layer_cost"]
