"""A logit branch: an intermediate stage output projected into logit space (OFA, FBT's deep supervision)."""

from __future__ import annotations

import torch
from torch import nn

from ..backbones.base import StageInfo, to_map


class LogitBranch(nn.Module):
    """Project an intermediate stage output into logit space.

    ``1x1 conv -> GELU -> global average pool -> LayerNorm -> Linear``, on the map view of the
    stage (prefix tokens dropped). Deliberately lighter than OFA's stack of blocks, so that its
    cost stays comparable with the other methods'.
    """

    def __init__(self, info: StageInfo, num_labels: int, width: int):
        super().__init__()
        self.info = info
        self.net = nn.Sequential(
            nn.Conv2d(info.channels, width, kernel_size=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.LayerNorm(width),
            nn.Linear(width, num_labels),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.net(to_map(feature, self.info))
