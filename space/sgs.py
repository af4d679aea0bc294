"""Similarity Guided Sampling (SGS) on tensors, and the helper that inserts it into a spec.

e3d's SGS layer (its own design after the idea of adaptive temporal feature resolutions; see
``docs/SEV_SGS.md``) works on a feature map x of shape (N, C, T, H, W):

1. **Embed.** Each slice is averaged on a grid of at most 4 x 4 cells and a 1x1x1 conv with bias
   maps it to L channels: z (N, L, T, h, w). Each channel is centred over the cells, so a slice is
   compared by the layout of its content (pixel noise averages out on the grid; brightness common
   to the whole slice does not count). Slice t is the vector z_t of its L x h x w values.
2. **Similarity.** Neighbouring slices differ by ``d_t = |z_t - z_{t-1}|^2 / (|z_t|^2 + |z_{t-1}|^2)``,
   a scale-free change in [0, 2]: 0 for identical slices, about 1 for unrelated ones.
3. **Bins.** The running sum of the changes places slice t at ``u_t = sum_{s<=t} d_s / w`` on a line
   of bins 0 .. bins - 1 (slice 0 at 0), with ``w = bin_width``, or wider for a clip whose total
   change would not fit on the line (then ``w = total / (bins - 1)``: the clip is spread over all
   the bins instead of piling its end into the last one). A slice belongs to its nearest bin; the
   bins that hold at least one slice are kept, in order. A static clip keeps one bin; a clip whose
   every slice is unrelated to the last (d ~ 1 >= w) keeps ``min(T, bins)``.
4. **Merge.** Kept bin b is the average of the slices weighted by the triangular kernel
   ``max(0, 1 - |u_t - b|)``, normalised to sum 1. The weights are piecewise linear in u, so the
   loss reaches the embedding (through u) and every earlier layer (through x and z); only the choice
   of which bins are kept is discrete. The merge is one batched matrix product (the ``merge``
   module, a ``matmul`` layer): (K, T) weights times the (T, C*H*W) slices.

A clip keeps a multiple of ``multiple`` bins (the last kept bin is repeated up to it). The number kept
per clip is left on the merge module (``last_bins``) for :class:`space.modules.Net`, which runs the
rest of the network once per group of clips that kept the same number, so no clip pays for another's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from space.spec import NetSpec, SGSSpec, SpecError

EPS = 1e-12
"""Floor of the energy of a pair of slices, so that two all-zero slices count as identical."""


def bin_weights(z: Tensor, *, bins: int, bin_width: float, multiple: int = 1) -> tuple[Tensor, Tensor]:
    """The bin weights of a batch of embeddings ``z`` (N, L, T, H, W), per the module docstring.

    Returns ``(weights, kept)``: ``weights`` (N, K_max, T), row b of clip i the normalised weights of
    its b-th kept bin (rows past its count are zero), and ``kept`` (N,) each clip's count K_i.
    """
    n, t = z.shape[0], z.shape[2]
    if z.shape[3] * z.shape[4] > 1:
        z = z - z.mean((3, 4), keepdim=True)  # compare layouts: what is common to the whole slice does not count
    e = z.transpose(1, 2).reshape(n, t, -1)
    energy = e.pow(2).sum(-1)
    change = (e[:, 1:] - e[:, :-1]).pow(2).sum(-1)
    pair = torch.stack((energy[:, 1:], energy[:, :-1])).sum(0).clamp_min(EPS)
    total = torch.cat((change.new_zeros(n, 1), (change / pair).cumsum(1)), 1)
    # a clip that changes more than bins - 1 bin widths is spread over the bins with wider ones
    width = (total[:, -1:] / max(bins - 1, 1)).clamp_min(bin_width)
    position = (total / width).clamp(max=bins - 1)
    centres = torch.arange(bins, device=z.device, dtype=z.dtype)
    kernel = (1 - (position[:, None, :] - centres[None, :, None]).abs()).clamp_min(0)  # (N, bins, T)
    nearest = position.detach().round().long()
    occupied = torch.zeros(n, bins, dtype=torch.bool, device=z.device).scatter_(1, nearest, True)
    found = occupied.sum(1).tolist()
    kept = [-(-f // multiple) * multiple for f in found]
    k_max = max(kept)
    rows = []
    for i in range(n):
        w = kernel[i, occupied[i]]
        w = w / w.sum(1, keepdim=True)
        if kept[i] > found[i]:
            w = torch.cat((w, w[-1:].expand(kept[i] - found[i], t)))
        rows.append(torch.cat((w, w.new_zeros(k_max - kept[i], t))) if kept[i] < k_max else w)
    return torch.stack(rows), torch.tensor(kept)


class BinMerge(nn.Module):
    """The merge of an SGS unit: ``bmm(weights, slices)``; remembers the bins each clip of the last batch kept."""

    def __init__(self) -> None:
        super().__init__()
        self.last_bins: Tensor | None = None

    def forward(self, weights: Tensor, slices: Tensor) -> Tensor:
        """(N, K, T) weights times (N, T, D) slices -> (N, K, D)."""
        return torch.bmm(weights, slices)


def merge_similar(merge: BinMerge, x: Tensor, z: Tensor, *, bins: int, bin_width: float, multiple: int) -> Tensor:
    """Run SGS on features ``x`` (N, C, T, H, W) with embedding ``z``: (N, C, K_max, H, W), clip i valid in
    its first ``merge.last_bins[i]`` bins (the rest zero)."""
    weights, kept = bin_weights(z, bins=bins, bin_width=bin_width, multiple=multiple)
    n, c, t, h, w = x.shape
    merge.last_bins = kept
    y = merge(weights, x.transpose(1, 2).reshape(n, t, c * h * w))
    return y.view(n, -1, c, h, w).transpose(1, 2)


def temporal_size_after(spec: NetSpec, stage: int) -> int:
    """T of the feature map that leaves stage ``stage`` (for the most expensive clip)."""
    prefix = f"stages.{stage}."
    last = [layer for layer in spec.layers if layer.name.startswith(prefix) or layer.name == prefix[:-1]]
    if not last:
        raise SpecError("sgs.after_stage", f"the spec has no stage {stage}")
    return last[-1].out_shape[1]


def with_sgs(spec: NetSpec, after_stage: int, *, bins: int | None = None, embed: int = 8, bin_width: float = 0.5) -> NetSpec:
    """``spec`` with an SGS layer after stage ``after_stage`` (any SGS already there is kept).

    ``bins`` defaults to the T leaving that stage (SGS can only drop slices). ``multiple`` is the
    smallest power of two for which every count SGS can keep runs through the rest of the network
    (1 for most families; ShuffleNetV1's average-pool shortcuts need an even T at each downsampling
    unit); ``bins`` is rounded down to it.
    """
    if any(layer.after_stage == after_stage for layer in spec.sgs):
        raise SpecError("sgs.after_stage", f"the spec has an SGS layer after stage {after_stage} already")
    t = temporal_size_after(spec, after_stage)
    top = t if bins is None else min(bins, t)
    multiple, last = 1, None
    while multiple <= top:
        layer = SGSSpec(after_stage, top // multiple * multiple, embed=embed, bin_width=bin_width, multiple=multiple)
        layers = tuple(sorted((*spec.sgs, layer), key=lambda s: s.after_stage))
        try:
            return spec.replace(sgs=layers)
        except SpecError as e:
            last = e
            multiple *= 2
    assert last is not None
    raise SpecError(last.field, f"{last.reason} (no multiple of bins up to {top} fits)")
