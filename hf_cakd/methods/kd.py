"""``kd``: Hinton et al. (2015), temperature-scaled KL to the teacher's logits plus cross-entropy."""

from dataclasses import dataclass, field

from ..losses import kd_loss
from .base import DistillationMethod, MethodConfig, register_method


@dataclass
class KDConfig(MethodConfig):
    kd_temperature: float = field(default=4.0, metadata={"help": "Temperature of Hinton KD."})
    logit_weight: float = field(default=1.0, metadata={"help": "Weight of the logit distillation term."})


@register_method("kd", title="Hinton knowledge distillation")
class LogitDistillation(DistillationMethod):
    config_class = KDConfig

    def forward(self, student, teacher, labels):
        kd = kd_loss(student.logits, teacher.logits, self.config.kd_temperature)
        return {"ce": self.supervised_loss(student.logits, labels), "kd": self.config.logit_weight * kd}
