"""Faster backward passes for 3D convolutions on a CPU: depthwise, grouped pointwise, and bias gradients.

PyTorch's CPU backward of a depthwise ``Conv3d`` (``groups == in_channels == out_channels``) computes the
input gradient several times slower than the forward pass of the same layer, in channels-last-3d and contiguous
layout alike (torch 2.13). Mathematically that gradient is itself a depthwise convolution of the output
gradient with the kernel flipped in all three dimensions; for a strided layer, one such stride-1 convolution
per remainder of the input positions modulo the stride, each with the kernel taps that reach those positions
(:func:`depthwise_grad_input`). :class:`DepthwiseConv3d` runs it as exactly those forward convolutions.
The weight gradient, which PyTorch computes 5-13x slower than the forward pass, runs in a small C kernel
that sums as many channels at a time as a vector register holds (:func:`depthwise_grad_weight`; PyTorch's where it
cannot be built). The result is deterministic (two passes give identical gradients, whatever the number of
threads) and equal to PyTorch's up to float rounding.

A grouped pointwise ``Conv3d`` (1x1x1 kernel, stride 1, ``1 < groups``, as in ShuffleNetV1) gets its weight
gradient, which PyTorch computes 2-12x slower than its forward pass in channels-last-3d, from one batched
matrix product of the channels-last views (:func:`grouped_pointwise_grad_weight`, :class:`GroupedPointwiseConv3d`);
its input gradient stays PyTorch's. It repeats exactly at a given number of threads. Any other convolution with
a bias (SqueezeNet's) gets its bias gradient as a plain sum (:class:`BiasedConv3d`), not from oneDNN's backward.

All three run only where they apply: float32 on a CPU, gradients enabled, no autocast; anything else runs the
plain convolution. What they gain per training step is measured by ``bench.train_speed`` (its ``fp32 channels-last``
and ``fp32 channels-last+dw`` columns).
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from profiler import native

Triple = tuple[int, int, int]


def depthwise_grad_input(grad: Tensor, weight: Tensor, input_shape: torch.Size, *, stride: Triple, padding: Triple) -> Tensor:
    """The gradient of a depthwise ``conv3d(x, weight, stride=stride, padding=padding, groups=C)`` with
    respect to ``x`` (of ``input_shape``), given the output gradient ``grad``; in ``grad``'s memory format.

    At stride 1 it is one depthwise convolution of ``grad`` with the flipped kernel. A strided layer's input
    positions fall into ``prod(stride)`` classes by their remainders modulo the stride; the positions of one
    class receive ``grad`` through one sub-grid of the kernel's taps, so each class is a stride-1 depthwise
    convolution of ``grad`` with those taps, flipped (:func:`_phase`), written to every ``stride``-th
    position. Together they do the forward pass's multiply-adds once, where spreading ``grad`` onto the
    input grid with zeros in between would do them ``prod(stride)`` times over.
    """
    fmt = torch.channels_last_3d if grad.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format
    if tuple(stride) == (1, 1, 1):
        pad = [weight.shape[2 + i] - 1 - padding[i] for i in range(3)]
        if min(pad) >= 0:
            return F.conv3d(grad, weight.flip(2, 3, 4), None, 1, pad, 1, weight.shape[0]).contiguous(memory_format=fmt)
    out = torch.empty(input_shape, dtype=grad.dtype, device=grad.device, memory_format=fmt)
    for phase in itertools.product(*(range(s) for s in stride)):
        dims = [_phase(weight.shape[2 + i], stride[i], padding[i], phase[i], input_shape[2 + i], grad.shape[2 + i]) for i in range(3)]
        target = out[:, :, phase[0] :: stride[0], phase[1] :: stride[1], phase[2] :: stride[2]]
        if any(d is None for d in dims):
            target.zero_()  # no tap of the kernel reaches these positions (if there are any)
            continue
        taps = [d for d in dims if d is not None]
        w = weight[:, :, taps[0].taps][:, :, :, taps[1].taps][..., taps[2].taps].flip(2, 3, 4)
        y = F.conv3d(grad, w, None, 1, [d.pad for d in taps], 1, weight.shape[0])
        target.copy_(y[:, :, taps[0].window, taps[1].window, taps[2].window])
    return out


def depthwise_grad_weight(grad: Tensor, x: Tensor, weight: Tensor, *, stride: Triple, padding: Triple) -> Tensor:
    """The gradient of a depthwise ``conv3d(x, weight, stride=stride, padding=padding, groups=C)`` with
    respect to ``weight``, given the output gradient ``grad``.

    For float32 channels-last-3d tensors on a CPU it runs e3d's kernel (``profiler/kernels/depthwise_wgrad.c``,
    through :mod:`profiler.native`), splitting the channels between torch's threads; anything else, or where
    the kernel cannot be built, runs PyTorch's.
    """
    lib = _usable_kernel()
    cl = torch.channels_last_3d
    native_layout = x.is_contiguous(memory_format=cl) and grad.is_contiguous(memory_format=cl)
    if lib is None or x.device.type != "cpu" or {x.dtype, grad.dtype} != {torch.float32} or not native_layout:
        mask = [False, True, False]
        conv = (stride, padding, [1] * 3, False, [0] * 3, weight.shape[0], mask)
        return torch.ops.aten.convolution_backward(grad, x, weight, None, *conv)[1]
    out = torch.empty(weight.shape, dtype=torch.float32)
    dims = (ctypes.c_long * 17)(*x.shape, *grad.shape[2:], *weight.shape[2:], *stride, *padding)
    args = (x.data_ptr(), grad.data_ptr(), out.data_ptr(), dims)
    first, *rest = channel_split(x.shape[1], torch.get_num_threads())
    others = [_pool().submit(lib.depthwise_wgrad, *args, *part) for part in rest]  # ctypes lets go of the GIL
    lib.depthwise_wgrad(*args, *first)
    for f in others:
        f.result()
    return out


def channel_split(channels: int, threads: int, block: int = 16) -> list[tuple[int, int]]:
    """``[lo, hi)`` channel ranges for up to ``threads`` threads, in whole blocks of ``block`` channels."""
    blocks = -(-channels // block)
    n = max(1, min(threads, blocks))
    edges = [min(channels, round(i * blocks / n) * block) for i in range(n + 1)]
    return list(itertools.pairwise(edges))


@cache
def _pool() -> ThreadPoolExecutor:
    """Threads that run the other parts of a split kernel call."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="e3d-dw")


KERNEL = "depthwise_wgrad"
"""The C kernel's name (``profiler/kernels/depthwise_wgrad.c``)."""


def weight_grad_backend() -> str:
    """``e3d kernel`` where :func:`depthwise_grad_weight` runs e3d's kernel on this machine, else ``pytorch``."""
    return "pytorch" if native.unavailable(KERNEL) else "e3d kernel"


def weight_grad_note() -> str | None:
    """Where :func:`depthwise_grad_weight` runs PyTorch's code because e3d's kernel cannot run here, a note
    saying so and why; None where the kernel runs."""
    why = native.unavailable(KERNEL)
    return None if why is None else f"+dw without e3d's weight-gradient kernel ({why}), so with PyTorch's slower one"


def _usable_kernel() -> ctypes.CDLL | None:
    """:func:`_kernel` unless native kernels are turned off (``E3D_NATIVE=0``, read on every call)."""
    return _kernel() if native.enabled() else None


@cache
def _kernel() -> ctypes.CDLL | None:
    """The weight-gradient kernel with its argument types declared, or None."""
    lib = native.library(KERNEL)
    if lib is not None:
        lib.depthwise_wgrad.argtypes = [ctypes.c_void_p] * 3 + [ctypes.POINTER(ctypes.c_long), ctypes.c_long, ctypes.c_long]
        lib.depthwise_wgrad.restype = None
    return lib


@dataclasses.dataclass(frozen=True)
class _Phase:
    """Along one axis, the input positions ``i = stride * j + phase`` (``j = 0, 1, ...``): the kernel taps
    that reach them, the zero padding of the stride-1 convolution over ``grad`` that computes them, and the
    window of its output that holds them."""

    taps: tuple[int, ...]
    pad: int
    window: slice


def _phase(k: int, s: int, p: int, r: int, n_in: int, n_out: int) -> _Phase | None:
    """:class:`_Phase` of remainder ``r`` on an axis of kernel ``k``, stride ``s``, padding ``p``, ``n_in`` input
    and ``n_out`` output positions; None when no tap reaches it or it has no positions. Tap ``t`` links input ``s*j + r`` to output
    ``j - (t - p - r) / s`` where that is a whole number."""
    taps = tuple(t for t in range(k) if (t - p - r) % s == 0)
    count = len(range(r, n_in, s))
    if not taps or not count:
        return None
    shifts = [(t - p - r) // s for t in taps]  # increasing with t
    pad = max(shifts[-1], count - 1 - shifts[0] - (n_out - 1), 0)
    start = pad - shifts[-1]
    return _Phase(taps, pad, slice(start, start + count))


class _DepthwiseFn(torch.autograd.Function):
    """``conv3d`` of a depthwise layer whose input gradient is :func:`depthwise_grad_input`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Triple, padding: Triple) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding)  # type: ignore[attr-defined]
        return F.conv3d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = depthwise_grad_input(grad, weight, x.shape, stride=stride, padding=padding) if need_x else None
        gw = depthwise_grad_weight(grad, x, weight, stride=stride, padding=padding) if need_w else None
        gb = grad.sum((0, 2, 3, 4)) if need_b else None
        return gx, gw, gb, None, None


class DepthwiseConv3d(nn.Conv3d):
    """A depthwise ``nn.Conv3d`` (same parameters and state dict) whose float32 CPU training backward computes
    the input gradient as a forward convolution (:func:`depthwise_grad_input`)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if _applies(input) and (input.requires_grad or weight.requires_grad):
            return _DepthwiseFn.apply(input, weight, bias, self.stride, self.padding)
        return super()._conv_forward(input, weight, bias)


def grouped_pointwise_grad_weight(grad: Tensor, x: Tensor, groups: int) -> Tensor:
    """The gradient of ``conv3d(x, weight, groups=groups)`` with respect to a 1x1x1 ``weight`` (stride 1, no
    padding), given the output gradient ``grad``: per group, the output gradient's channels times the input's,
    summed over clips and positions, as one batched matrix product (views, no copies, of channels-last tensors)."""
    n_in, n_out = x.shape[1], grad.shape[1]
    rows = x.numel() // n_in
    xs = x.permute(0, 2, 3, 4, 1).reshape(rows, groups, n_in // groups).transpose(0, 1)
    gs = grad.permute(0, 2, 3, 4, 1).reshape(rows, groups, n_out // groups).permute(1, 2, 0)
    return torch.bmm(gs, xs).reshape(n_out, n_in // groups, 1, 1, 1)


class _GroupedPointwiseFn(torch.autograd.Function):
    """``conv3d`` of a grouped pointwise layer whose weight gradient is :func:`grouped_pointwise_grad_weight`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.groups = groups  # type: ignore[attr-defined]
        return F.conv3d(x, weight, bias, 1, 0, 1, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        conv = ([1] * 3, [0] * 3, [1] * 3, False, [0] * 3, ctx.groups, [True, False, False])
        gx = torch.ops.aten.convolution_backward(grad, x, weight, None, *conv)[0] if need_x else None
        gw = grouped_pointwise_grad_weight(grad, x, ctx.groups) if need_w else None
        gb = grad.sum((0, 2, 3, 4)) if need_b else None
        return gx, gw, gb, None


class GroupedPointwiseConv3d(nn.Conv3d):
    """A grouped pointwise ``nn.Conv3d`` (same parameters and state dict) whose float32 CPU training backward
    computes the weight gradient as a batched matrix product (:func:`grouped_pointwise_grad_weight`)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if _applies(input) and (input.requires_grad or weight.requires_grad):
            return _GroupedPointwiseFn.apply(input, weight, bias, self.groups)
        return super()._conv_forward(input, weight, bias)


class _BiasedFn(torch.autograd.Function):
    """``conv3d`` with a bias whose gradient is a plain sum of the output gradient; PyTorch's backward the rest."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor, conv: tuple[Triple, Triple, Triple, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = conv  # type: ignore[attr-defined]
        return F.conv3d(x, weight, bias, *conv)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = None
        if need_x or need_w:
            mask = [need_x, need_w, False]
            gx, gw, _ = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False, [0] * 3, groups, mask)
        return gx, gw, grad.sum((0, 2, 3, 4)) if need_b else None, None


class BiasedConv3d(nn.Conv3d):
    """An ``nn.Conv3d`` with a bias (same parameters and state dict) whose float32 CPU training backward sums the
    bias gradient itself: oneDNN's channels-last backward took 60 ms more for it than for the weight gradient
    alone in SqueezeNet's first layer (3 input channels, batch 16, 16x48x48; AMD EPYC, AVX2), a sum 3.6 ms."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if bias is not None and _applies(input) and (input.requires_grad or weight.requires_grad or bias.requires_grad):
            return _BiasedFn.apply(input, weight, bias, (self.stride, self.padding, self.dilation, self.groups))
        return super()._conv_forward(input, weight, bias)


def _applies(x: Tensor) -> bool:
    """Whether e3d's backward (:class:`_DepthwiseFn`, :class:`_GroupedPointwiseFn`, :class:`_BiasedFn`) may run on
    ``x``: float32 on a CPU with gradients on and no autocast."""
    return torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def is_depthwise(m: nn.Module) -> bool:
    """A plain ``nn.Conv3d`` with one input and one output channel per group, no dilation, zero padding."""
    return (
        type(m) is nn.Conv3d
        and m.groups > 1
        and m.groups == m.in_channels == m.out_channels
        and m.dilation == (1, 1, 1)
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


MIN_GROUP_INPUTS = 16
"""Grouped pointwise layers with fewer input channels per group keep PyTorch's weight gradient: there the
batched matrix product ran up to 4x slower than oneDNN's channels-last one (AMD EPYC with AVX2, torch 2.13;
from 16 on it was 1.6-12x faster for every such layer of the ShuffleNetV1 presets at 16x48x48 and 16x112x112)."""


def is_grouped_pointwise(m: nn.Module) -> bool:
    """A plain ``nn.Conv3d`` with a 1x1x1 kernel, stride 1, no padding, several groups of at least
    :data:`MIN_GROUP_INPUTS` input channels each."""
    return (
        type(m) is nn.Conv3d
        and m.groups > 1
        and m.in_channels // m.groups >= MIN_GROUP_INPUTS
        and m.kernel_size == m.stride == m.dilation == (1, 1, 1)
        and m.padding in ((0, 0, 0), "valid")
    )


def is_plain_biased(m: nn.Module) -> bool:
    """A plain ``nn.Conv3d`` with a bias and numeric zero padding (:func:`e3d_class` gives depthwise and grouped
    pointwise ones their own classes first)."""
    return type(m) is nn.Conv3d and m.bias is not None and m.padding_mode == "zeros" and not isinstance(m.padding, str)


def e3d_class(m: nn.Module) -> type[nn.Conv3d] | None:
    """The class whose backward e3d gives ``m`` (:class:`DepthwiseConv3d`, :class:`GroupedPointwiseConv3d`,
    :class:`BiasedConv3d`), or None where it keeps PyTorch's."""
    kinds = ((is_depthwise, DepthwiseConv3d), (is_grouped_pointwise, GroupedPointwiseConv3d), (is_plain_biased, BiasedConv3d))
    return next((cls for test, cls in kinds if test(m)), None)


def use_e3d_grads(model: nn.Module) -> int:
    """Give every layer of ``model`` that :func:`e3d_class` names that class, in place (its class only:
    parameters, buffers and state dict stay as they are); returns how many it changed (none the second time)."""
    swaps = [(m, cls) for m in model.modules() if (cls := e3d_class(m)) is not None]
    for m, cls in swaps:
        m.__class__ = cls
    return len(swaps)
