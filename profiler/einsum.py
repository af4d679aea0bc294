"""Multiply-adds of ``torch.einsum`` read from its equation.

torch evaluates an einsum of n operands as n - 1 pairwise products (left to right, or along
opt_einsum's path when that package is installed and enabled). Before each product, the axes of
one operand that nothing later needs are summed away (additions, not multiply-adds); the product
then costs one multiply-add per element of the grid of all axes the two operands hold, when it
contracts at least one axis (a batched matrix product). A product that contracts nothing is an
element-wise multiply (an outer or Hadamard product), not a multiply-add, like ``aten::mul``.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

Step = tuple[str, tuple[int, ...], int]
"""(kind, output shape, multiply-adds per output element): ``einsum`` for a contraction, ``mul`` for an
element-wise product, ``sum`` for a one-operand einsum (a permutation, diagonal or sum)."""


def einsum_steps(equation: str, shapes: Sequence[Sequence[int]]) -> list[Step]:
    """The products an einsum performs, each as (kind, output shape, multiply-adds per output element)."""
    inputs, output, sizes = parse_einsum(equation, shapes)
    if len(inputs) == 1:
        return [("sum", tuple(sizes[a] for a in output), 1)]
    operands = [list(dict.fromkeys(t)) for t in inputs]
    steps: list[Step] = []
    for i, j in _path(equation, shapes, len(operands)):
        a, b = operands[i], operands[j]
        rest = [t for n, t in enumerate(operands) if n not in (i, j)]
        later = set(output).union(*rest)
        a = [x for x in a if x in later or x in b]  # axes summed away first: not multiply-adds
        b = [x for x in b if x in later or x in a]
        union = list(dict.fromkeys(a + b))
        contracted = [x for x in union if x in a and x in b and x not in later]
        kept = [x for x in union if x not in contracted]
        shape = tuple(sizes[x] for x in kept)
        if contracted:
            steps.append(("einsum", shape, prod(sizes[x] for x in contracted)))
        else:
            steps.append(("mul", shape, 1))
        operands = [*rest, kept]
    return steps


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """Total multiply-adds of an einsum (0 when it contracts nothing)."""
    return sum(prod(shape) * k for kind, shape, k in einsum_steps(equation, shapes) if kind == "einsum")


def parse_einsum(equation: str, shapes: Sequence[Sequence[int]]) -> tuple[list[list[str]], list[str], dict[str, int]]:
    """Axis labels of each operand and of the output, and each label's size (``...`` becomes labels
    ``.0``, ``.1``, ... aligned from the right and broadcast; an implicit output keeps the labels seen
    once, in alphabetical order, after the broadcast ones)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum {equation!r} names {len(terms)} operands, got {len(shapes)}")
    sizes: dict[str, int] = {}
    inputs: list[list[str]] = []
    ellipsis = 0
    for term, shape in zip(terms, shapes, strict=True):
        letters = term.replace("...", "")
        n_ell = len(shape) - len(letters) if "..." in term else 0
        ellipsis = max(ellipsis, n_ell)
        ell = [f".{ellipsis - n_ell + d}" for d in range(n_ell)]
        before, _, after = term.partition("...") if "..." in term else (term, "", "")
        labels = [*before, *ell, *after]
        if len(labels) != len(shape):
            raise ValueError(f"einsum {equation!r}: operand {term!r} has {len(shape)} dimensions")
        for label, size in zip(labels, shape, strict=True):
            sizes[label] = max(sizes.get(label, 1), int(size))
        inputs.append(labels)
    broadcast = [f".{d}" for d in range(ellipsis)]
    if arrow:
        before, _, after = rhs.partition("...") if "..." in rhs else (rhs, "", "")
        output = [*before, *(broadcast if "..." in rhs else []), *after]
    else:
        counts = [x for t in inputs for x in t if not x.startswith(".")]
        output = [*broadcast, *sorted(x for x in set(counts) if counts.count(x) == 1)]
    return inputs, output, sizes


def _path(equation: str, shapes: Sequence[Sequence[int]], n: int) -> list[tuple[int, int]]:
    """Pairs of operand positions in the order torch contracts them (the result goes last)."""
    try:
        import torch.backends.opt_einsum as toe

        if n > 2 and toe.is_available() and toe.enabled:  # pragma: no cover - opt_einsum is not installed here
            import opt_einsum  # type: ignore[import-not-found]

            path, _ = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=toe.strategy)
            return [(int(p[0]), int(p[1])) for p in path]
    except ImportError:  # pragma: no cover
        pass
    return [(0, 1)] * (n - 1)
