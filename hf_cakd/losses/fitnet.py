"""FitNet (Romero et al., ICLR 2015): pixel-wise feature regression, the ``fitnet`` baseline.

It is here to show what docs/method.md says: across architectures the same knowledge sits at
different places of a CNN map and a ViT token grid, so matching them position by position fails.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import StageInfo, to_map


class FitNetLoss(nn.Module):
    """MSE between a projected student stage and the teacher's, on the map view.

    A 1x1 convolution maps the student's channels to the teacher's; the projected map is resized
    (bilinear) to the teacher's grid when the grids differ; tokens are read as maps (prefix
    tokens dropped). The teacher is detached: only the student and the projector learn. The MSE
    is computed in float32.
    """

    def __init__(self, student_info: StageInfo, teacher_info: StageInfo):
        super().__init__()
        self.student_info = student_info
        self.teacher_info = teacher_info
        self.projector = nn.Conv2d(student_info.channels, teacher_info.channels, kernel_size=1)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        prediction = self.projector(to_map(student_feature, self.student_info))
        if self.student_info.grid != self.teacher_info.grid:
            prediction = F.interpolate(prediction, size=self.teacher_info.grid, mode="bilinear", align_corners=False)
        target = to_map(teacher_feature.detach(), self.teacher_info)
        return F.mse_loss(prediction.float(), target.float())
