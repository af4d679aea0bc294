"""How much TorchScript has traced in this process: for tests that a measurement ran in a child process."""

from __future__ import annotations

import re


def traced_types() -> int:
    """How many types TorchScript has registered in this process, about: the index in the name it gives a
    newly traced module's type (each traced module registers its own, with its graph, until the process exits)."""
    import torch

    probe = torch.jit.trace(torch.nn.Conv3d(1, 1, 1), torch.randn(1, 1, 1, 1, 1))
    found = re.search(r"___torch_mangle_(\d+)", probe._c._type().qualified_name())
    return int(found.group(1)) if found else 0
