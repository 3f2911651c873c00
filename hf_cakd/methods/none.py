"""``none``: the student trained alone on the labels: the baseline every method must beat."""

from .base import DistillationMethod, register_method


@register_method("none", title="no distillation (supervised baseline)")
class NoDistillation(DistillationMethod):
    requires_teacher = False

    def forward(self, student, teacher, labels):
        return {"ce": self.supervised_loss(student.logits, labels)}
