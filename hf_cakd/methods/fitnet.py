"""``fitnet``: Romero et al. (2015) hints, a projector and pixel-wise MSE on one stage.

Kept as the baseline method.md section 3 explains: across architectures the same knowledge
sits at different places of a CNN map and a token grid, so pixel-wise matching misleads.
"""

from ..losses import FitNetLoss
from .base import DistillationMethod, register_method


@register_method("fitnet")
class FitNet(DistillationMethod):
    def __init__(self, student, teacher, args):
        super().__init__(student, teacher, args)
        if not 1 <= args.fitnet_stage <= 4:
            raise ValueError(f"fitnet_stage is a stage number 1..4, got {args.fitnet_stage}")
        self.stage_index = args.fitnet_stage - 1
        self.feature_weight = args.feature_weight
        self.hint = FitNetLoss(student.stage_infos[self.stage_index], teacher.stage_infos[self.stage_index])

    def forward(self, student, teacher, labels):
        hint = self.hint(student.features[self.stage_index], teacher.features[self.stage_index])
        return {"ce": self.supervised_loss(student.logits, labels), "fitnet": self.feature_weight * hint}
