"""``kd``: Hinton et al. (2015), temperature-scaled KL to the teacher's logits plus cross-entropy."""

from ..losses import kd_loss
from .base import DistillationMethod, register_method


@register_method("kd")
class LogitDistillation(DistillationMethod):
    def __init__(self, student, teacher, args):
        super().__init__(student, teacher, args)
        self.temperature = args.kd_temperature
        self.logit_weight = args.logit_weight

    def forward(self, student, teacher, labels):
        return {
            "ce": self.supervised_loss(student.logits, labels),
            "kd": self.logit_weight * kd_loss(student.logits, teacher.logits, self.temperature),
        }
