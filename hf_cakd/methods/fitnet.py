"""``fitnet``: Romero et al. (2015) hints, a projector and pixel-wise MSE on one stage.

Kept as the baseline docs/method.md explains: across architectures the same knowledge sits at
different places of a CNN map and a token grid, so pixel-wise matching misleads.
"""

from dataclasses import dataclass

from ..losses import FitNetLoss
from .base import DistillationMethod, MethodConfig, Stage, option, register_method


@dataclass
class FitNetConfig(MethodConfig):
    fitnet_stage: Stage = option(3, "Stage (1-4) whose output the student matches, through a projector.")
    fitnet_weight: float = option(1.0, "Weight of the FitNet hint (the pixel-wise squared error on that stage).")


@register_method("fitnet", title="FitNet feature hints")
class FitNet(DistillationMethod):
    config_class = FitNetConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.stage_index = config.fitnet_stage - 1
        self.hint = FitNetLoss(student.stage_infos[self.stage_index], teacher.stage_infos[self.stage_index])

    def forward(self, student, teacher, labels):
        hint = self.hint(student.features[self.stage_index], teacher.features[self.stage_index])
        return {"ce": self.supervised_loss(student.logits, labels), "fitnet": self.config.fitnet_weight * hint}
