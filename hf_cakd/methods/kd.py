"""``kd``: Hinton et al. (2015), temperature-scaled KL to the teacher's logits plus cross-entropy."""

from dataclasses import dataclass

from ..losses import kd_loss
from .base import DistillationMethod, MethodConfig, option, register_method


@dataclass
class KDLossOptions(MethodConfig):
    """Hinton KD's logit loss, shared by ``kd`` and ``fbt`` (``--fbt_logit_loss kd``)."""

    kd_temperature: float = option(4.0, "Temperature T of the Hinton KD loss (its KL term is scaled by T^2).")

    def __post_init__(self):
        super().__post_init__()
        if self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be positive, got {self.kd_temperature}")

    def kd_logit_loss(self, learner_logits, teacher_logits):
        return kd_loss(learner_logits, teacher_logits, self.kd_temperature)


@dataclass
class KDConfig(KDLossOptions):
    kd_weight: float = option(1.0, "Weight of the KD term.")


@register_method("kd", title="Hinton knowledge distillation")
class LogitDistillation(DistillationMethod):
    config_class = KDConfig

    def forward(self, student, teacher, labels):
        kd = self.config.kd_logit_loss(student.logits, teacher.logits)
        return {"ce": self.supervised_loss(student.logits, labels), "kd": self.config.kd_weight * kd}
