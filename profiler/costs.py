"""Pure cost rules: one function from a :class:`space.Layer` to its multiply-adds, parameters,
paper-convention FLOPs and output size. Analytic counting (layers traced from a spec) and module
counting (layers observed while a model runs) both go through :func:`layer_cost`.

Units, per clip (batch 1):

``macs``
    multiply-adds of convolutions and linear layers only; e3d's main unit. Also those of products of
    two tensors: ``matmul`` (``@``, ``bmm``, SGS's merge of slices into bins; ``in_shape[-1]`` is the
    contracted size, ``out_shape`` the full output), ``einsum`` (one layer per pairwise contraction,
    see :mod:`profiler.einsum`) and ``attention`` (scaled dot-product attention: every query, the
    ``out_shape[:-1]`` positions, against ``in_shape[0]`` keys, ``in_shape[1]`` = E + Ev multiply-adds
    per key for the scores and the weighted sum of values; the softmax is not counted).
``paper_flops``
    the convention of the paper's Table 8 ("MFLOPs"): conv multiply-adds (+1 per output element
    with bias), BatchNorm 2 per element, ReLU/ReLU6 1 per element, max-pool ``kernel - 1`` per
    output (the paper's counter used the int kernel size, so 2 for a 3x3x3 window), average pools
    the window volume per output, Linear ``(2 * in - 1) * out``. e3d's additions, which the paper's
    networks do not have: sigmoid 1 per element (like the other activations), ``matmul`` its
    multiply-adds (like a conv without bias).
``activations``
    output elements of every layer that computes (conv, linear, norm, activation, pooling).
"""

from __future__ import annotations

from math import prod
from typing import NamedTuple

from space.ops import Layer

MAC_KINDS = frozenset({"conv", "linear", "matmul", "einsum", "attention"})
"""Kinds whose multiply-adds make up ``macs``."""

ARITHMETIC_KINDS = frozenset({"bn", "relu", "relu6", "sigmoid", "maxpool", "avgpool", "gap"})
"""Kinds that compute but are not multiply-adds: counted in ``paper_flops`` and ``activations``."""

ELEMENTWISE_KINDS = frozenset({"add", "mul", "similarity"})
"""Element-wise arithmetic that neither convention counts (residual adds, squeeze-and-excitation's
channel scaling, SGS's similarity of neighbouring slices)."""


class Cost(NamedTuple):
    """What one layer costs for one clip."""

    macs: int = 0
    params: int = 0
    paper_flops: int = 0
    activations: int = 0


def conv_macs(out_shape: tuple[int, ...], in_channels: int, kernel: tuple[int, ...], groups: int) -> int:
    """Multiply-adds of a convolution: every output element reads ``in/groups * prod(kernel)`` inputs."""
    return prod(out_shape) * (in_channels // groups) * prod(kernel)


def layer_cost(layer: Layer) -> Cost:
    """Cost of one layer under the rules in this module's docstring (0 for data movement)."""
    return Cost(*layer_terms(layer))


Terms = tuple[int, int, int, int]
"""A :class:`Cost` as a plain tuple: (macs, params, paper_flops, activations)."""


def layer_terms(layer: Layer) -> Terms:
    """:func:`layer_cost` as a plain tuple, for sums over many layers (no named tuple made per layer)."""
    k, out = layer.kind, prod(layer.out_shape)
    if k == "conv":
        cout = layer.out_shape[0]
        fan_in = layer.in_shape[0] // layer.groups * prod(layer.kernel)  # inputs each output element reads
        macs = out * fan_in  # what conv_macs gives, without computing the products twice
        if layer.bias:
            return (macs, cout * fan_in + cout, macs + out, out)
        return (macs, cout * fan_in, macs, out)
    if k == "linear":
        fan_in = layer.in_shape[-1]
        n_out = layer.out_shape[-1]
        macs = out * fan_in
        params = fan_in * n_out + (n_out if layer.bias else 0)
        return (macs, params, (2 * fan_in - 1) * out, out)
    if k in ("matmul", "einsum"):
        macs = out * layer.in_shape[-1]
        return (macs, 0, macs, out)
    if k == "attention":
        macs = prod(layer.out_shape[:-1]) * layer.in_shape[0] * layer.in_shape[1]
        return (macs, 0, macs, out)
    if k == "bn":
        return (0, 2 * layer.out_shape[0], 2 * out, out)
    if k in ("relu", "relu6", "sigmoid"):
        return (0, 0, out, out)
    if k == "maxpool":
        return (0, 0, (layer.kernel[0] - 1) * out, out)
    if k in ("avgpool", "gap"):
        return (0, 0, prod(layer.kernel) * out, out)
    return (0, 0, 0, 0)


def conv_type(layer: Layer) -> str:
    """Finer name of a convolution for breakdowns: depthwise, pointwise, grouped or dense."""
    cin = layer.in_shape[0]
    if layer.groups == cin and layer.groups > 1:
        return "conv (depthwise)"
    if prod(layer.kernel) == 1:
        return "conv (pointwise, grouped)" if layer.groups > 1 else "conv (pointwise)"
    return "conv (grouped)" if layer.groups > 1 else "conv (dense)"
