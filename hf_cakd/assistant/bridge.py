"""The local-to-global bridge of the assistant (fusion) model (docs/method.md, "fbt").

It turns one model's stage-3 output into the input another model's stage 4 expects:

1. view the source as a ``(B, C, H, W)`` map (prefix tokens dropped);
2. resample to the target grid and channels: a patch-embedding convolution (kernel = stride)
   when the source grid is an integer multiple of the target's, its transposed twin when it is an
   integer fraction, adaptive average pooling + 1x1 convolution otherwise. With ``upsample=False``
   a source grid smaller than the target's is kept (a 1x1 convolution maps the channels): FBT's
   bridge only ever downsamples, and a suffix that runs on any grid needs no invented positions.
   ``downsample=k`` then divides that grid by ``k`` in each direction (a suffix that runs on any
   grid does ``k**2`` times less work);
3. ``"attention"`` bridges add a learned position embedding and run one transformer block, so
   every position sees the whole image (local CNN features become global tokens); ``"linear"``
   bridges (used when the two models already share a family) stop after the projection;
4. normalise, prepend the target's prefix tokens (CLS, distillation) as learned embeddings, and
   lay the result out as the target expects (map or tokens).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from ..backbones import StageInfo, to_map

BRIDGE_TYPES = ("attention", "linear")


def _resampler(source: StageInfo, target: StageInfo) -> nn.Module:
    (src_h, src_w), (tgt_h, tgt_w) = source.grid, target.grid
    if src_h % tgt_h == 0 and src_w % tgt_w == 0 and src_h // tgt_h == src_w // tgt_w:
        stride = src_h // tgt_h
        return nn.Conv2d(source.channels, target.channels, kernel_size=stride, stride=stride)
    if tgt_h % src_h == 0 and tgt_w % src_w == 0 and tgt_h // src_h == tgt_w // src_w:
        stride = tgt_h // src_h
        return nn.ConvTranspose2d(source.channels, target.channels, kernel_size=stride, stride=stride)
    return nn.Sequential(nn.AdaptiveAvgPool2d(target.grid), nn.Conv2d(source.channels, target.channels, 1))


def bridged_grid(source: StageInfo, target: StageInfo, upsample: bool = True, downsample: int = 1) -> tuple[int, int]:
    """The grid the bridge hands the target's stage 4: the target's, or with ``upsample=False`` the
    source's when it is smaller in either direction; divided by ``downsample`` (at least 1x1)."""
    smaller = source.grid[0] < target.grid[0] or source.grid[1] < target.grid[1]
    grid = source.grid if smaller and not upsample else target.grid
    return tuple(max(1, size // downsample) for size in grid)


def default_num_heads(dim: int, head_dim: int = 64) -> int:
    """As many heads of about ``head_dim`` channels as divide ``dim`` evenly (at least one)."""
    heads = max(1, dim // head_dim)
    while dim % heads:
        heads -= 1
    return heads


class FusionBridge(nn.Module):
    def __init__(
        self,
        source: StageInfo,
        target: StageInfo,
        bridge_type: str = "attention",
        num_heads: int | None = None,
        mlp_ratio: float = 2.0,
        upsample: bool = True,
        downsample: int = 1,
    ):
        super().__init__()
        if bridge_type not in BRIDGE_TYPES:
            raise ValueError(f"bridge_type must be one of {BRIDGE_TYPES}, got {bridge_type!r}")
        if downsample < 1:
            raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
        self.source = source
        # What the bridge outputs: the target's layout and channels on the bridged grid.
        self.target = replace(target, grid=bridged_grid(source, target, upsample, downsample))
        dim = target.channels
        num_tokens = self.target.grid[0] * self.target.grid[1]
        self.resample = _resampler(source, self.target)
        if bridge_type == "attention":
            self.position_embedding = nn.Parameter(torch.zeros(1, num_tokens, dim))
            self.block = Block(dim, num_heads or default_num_heads(dim), mlp_ratio=mlp_ratio, qkv_bias=True)
        else:
            self.position_embedding, self.block = None, None
        self.norm = nn.LayerNorm(dim)
        if target.num_prefix_tokens:
            self.prefix_tokens = nn.Parameter(torch.zeros(1, target.num_prefix_tokens, dim))
        else:
            self.prefix_tokens = None
        self.reset_embeddings()

    def reset_embeddings(self) -> None:
        """Initialise the learned position and prefix embeddings as ViT does."""
        for embedding in (self.position_embedding, self.prefix_tokens):
            if embedding is not None:
                trunc_normal_(embedding, std=0.02)

    def forward(self, source_feature: torch.Tensor) -> torch.Tensor:
        feature_map = self.resample(to_map(source_feature, self.source))
        tokens = feature_map.flatten(2).transpose(1, 2)
        if self.block is not None:
            tokens = self.block(tokens + self.position_embedding)
        tokens = self.norm(tokens)
        if self.target.layout == "map":
            height, width = self.target.grid
            return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
        if self.prefix_tokens is not None:
            tokens = torch.cat([self.prefix_tokens.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens
