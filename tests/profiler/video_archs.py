"""Small video architectures of four kinds that e3d did not write, built by the tests themselves.

Each folds something into the batch axis or computes in a way a per-layer counter can miss:

* :class:`TSMNet`: a per-frame 2D CNN (frames folded into the batch, ``(B*T, C, H, W)``) with a
  temporal shift of part of the channels, as in TSM;
* :class:`R2Plus1D`: a (2+1)D network (each 3D conv split into a spatial and a temporal one);
* :class:`VideoTransformer`: tubelet embedding, attention written with ``einsum``, MViT-style pooled
  attention (depthwise pooling convs run on ``(B*heads, d, T, H, W)``) and a block with
  ``scaled_dot_product_attention``;
* :class:`X3DLike`: X3D-style bottlenecks (expansion, depthwise 3x3x3, squeeze-and-excitation, swish).

``python -m tests.profiler.video_archs`` prints the docs/COUNTING.md table of every counter on them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLIP = (3, 8, 32, 32)
"""(C, T, H, W) of one clip for every architecture here."""


def temporal_shift(x: Tensor, frames: int, fold: int) -> Tensor:
    """Shift ``fold`` channels one frame back and ``fold`` one frame forward; ``x`` is ``(B*T, C, H, W)``."""
    bt, c, h, w = x.shape
    x = x.view(bt // frames, frames, c, h, w)
    back = torch.cat((x[:, 1:, :fold], torch.zeros_like(x[:, :1, :fold])), 1)
    fwd = torch.cat((torch.zeros_like(x[:, :1, fold : 2 * fold]), x[:, :-1, fold : 2 * fold]), 1)
    return torch.cat((back, fwd, x[:, :, 2 * fold :]), 2).view(bt, c, h, w)


class TSMBlock(nn.Module):
    """Residual 2D block with a temporal shift in front of its first conv."""

    def __init__(self, channels: int, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(temporal_shift(x, self.frames, x.shape[1] // 8))))
        return F.relu(x + self.bn2(self.conv2(y)))


class TSMNet(nn.Module):
    """Per-frame 2D CNN: frames folded into the batch, features averaged over time at the end."""

    def __init__(self, *, frames: int = CLIP[1], width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(TSMBlock(width, frames), TSMBlock(width, frames))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        x = self.pool(self.blocks(self.stem(x))).flatten(1)
        return self.fc(x.view(b, t, -1).mean(1))


class Conv2Plus1D(nn.Sequential):
    """A 3D conv split into a spatial (1, 3, 3) conv and a temporal (3, 1, 1) conv."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(),
            nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )


class R2Plus1DBlock(nn.Module):
    """Residual block of two (2+1)D convs (a strided 1x1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2Plus1D(cin, cout, (cin + cout) // 2, stride)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = Conv2Plus1D(cout, cout, cout)
        self.bn2 = nn.BatchNorm3d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Conv3d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        short = x if self.down is None else self.down(x)
        return F.relu(short + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class R2Plus1D(nn.Module):
    """A small R(2+1)D network."""

    def __init__(self, *, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(Conv2Plus1D(3, width, 12, 2), nn.BatchNorm3d(width), nn.ReLU())
        self.layer1 = R2Plus1DBlock(width, width, 1)
        self.layer2 = R2Plus1DBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool3d(x, 1).flatten(1))


class EinsumAttention(nn.Module):
    """Multi-head self-attention written with einsum; ``pool`` adds MViT's pooling of q, k and v
    (depthwise strided 3D convs run with the heads folded into the batch axis)."""

    def __init__(self, dim: int, heads: int, *, pool: bool = False, thw: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.heads, self.thw = heads, thw
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        d = dim // heads
        self.pool_q = nn.Conv3d(d, d, 3, 1, 1, groups=d, bias=False) if pool else None
        self.pool_kv = nn.Conv3d(d, d, 3, (1, 2, 2), 1, groups=d, bias=False) if pool else None

    def _pool(self, x: Tensor, conv: nn.Module | None) -> Tensor:
        """(B, heads, N, d) -> pooled (B, heads, N', d), with (B*heads, d, T, H, W) in between."""
        if conv is None:
            return x
        b, h, _, d = x.shape
        t, hh, ww = self.thw
        y = conv(x.reshape(b * h, t, hh, ww, d).permute(0, 4, 1, 2, 3))
        return y.flatten(2).transpose(1, 2).reshape(b, h, -1, d)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = self._pool(q, self.pool_q), self._pool(k, self.pool_kv), self._pool(v, self.pool_kv)
        attn = torch.einsum("bhid,bhjd->bhij", q, k).mul(q.shape[-1] ** -0.5).softmax(-1)
        y = torch.einsum("bhij,bhjd->bhid", attn, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class SDPAAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """Pre-norm block: attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, attn: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attn
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VideoTransformer(nn.Module):
    """Tubelet embedding, an einsum block, a pooled-attention block and an SDPA block, mean-pooled head."""

    def __init__(self, *, dim: int = 32, heads: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, dim, (2, 8, 8), (2, 8, 8))
        thw = (CLIP[1] // 2, CLIP[2] // 8, CLIP[3] // 8)
        self.blocks = nn.Sequential(
            TransformerBlock(dim, EinsumAttention(dim, heads)),
            TransformerBlock(dim, EinsumAttention(dim, heads, pool=True, thw=thw)),
            TransformerBlock(dim, SDPAAttention(dim, heads)),
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


class X3DBlock(nn.Module):
    """X3D bottleneck: 1x1x1 expand, depthwise 3x3x3, squeeze-and-excitation, swish, 1x1x1 project."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.a = nn.Sequential(nn.Conv3d(cin, mid, 1, bias=False), nn.BatchNorm3d(mid), nn.ReLU())
        self.b = nn.Sequential(nn.Conv3d(mid, mid, 3, (1, stride, stride), 1, groups=mid, bias=False), nn.BatchNorm3d(mid))
        self.se = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(mid, mid // 4, 1), nn.ReLU(), nn.Conv3d(mid // 4, mid, 1), nn.Sigmoid())
        self.c = nn.Sequential(nn.Conv3d(mid, cout, 1, bias=False), nn.BatchNorm3d(cout))
        self.down = None if stride == 1 and cin == cout else nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.b(self.a(x))
        y = self.c(F.silu(y * self.se(y)))
        return F.relu(y + (x if self.down is None else self.down(x)))


class X3DLike(nn.Module):
    """A small X3D-like network: (1, 3, 3) + depthwise (5, 1, 1) stem, bottlenecks, conv head."""

    def __init__(self, *, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False),
            nn.Conv3d(width, width, (5, 1, 1), 1, (2, 0, 0), groups=width, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(X3DBlock(width, width, 2, 1), X3DBlock(width, 2 * width, 2, 2))
        self.head = nn.Sequential(nn.Conv3d(2 * width, 4 * width, 1, bias=False), nn.BatchNorm3d(4 * width), nn.ReLU())
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool3d(self.head(self.blocks(self.stem(x))), 1).flatten(1))


ARCHS: dict[str, Callable[[], nn.Module]] = {
    "tsm (per-frame 2D CNN, temporal shift)": TSMNet,
    "r2plus1d ((2+1)D convs)": R2Plus1D,
    "video transformer (einsum, pooled attention, sdpa)": VideoTransformer,
    "x3d-like (depthwise, SE, swish)": X3DLike,
}
"""Every architecture here, by the name the docs table uses."""


def main() -> None:
    """Print docs/COUNTING.md's table of every counter on every architecture here."""
    from profiler.compare import compare_counters, render_comparison

    torch.manual_seed(0)
    rows = [(name, compare_counters(make(), CLIP)) for name, make in ARCHS.items()]
    print(render_comparison(rows, CLIP))


if __name__ == "__main__":
    main()
