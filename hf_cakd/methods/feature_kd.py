"""``feature_kd``: the peer a timm user would pick, timm's ``FeatureDistillationTask`` on our views.

The student's pooled pre-logits (what its classifier reads, hf_cakd.backbones.heads), mapped by a
learned linear projection when the widths differ, are pulled towards the teacher's pooled
pre-logits with a mean-squared error, beside the cross-entropy: ``ce + feature_kd_weight * mse``.
The default weight 5.0 is the one timm's documentation shows for this task. One difference, on
purpose: timm reads pre-logits after the head's dropout in training mode, these views read them
before it (see hf_cakd.backbones.heads). docs/method.md compares it with the other methods.
"""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from .base import DistillationMethod, MethodConfig, option, register_method


@dataclass
class FeatureKDConfig(MethodConfig):
    feature_kd_weight: float = option(
        5.0, "Weight of the squared error between the student's pre-logits (projected) and the teacher's."
    )


@register_method("feature_kd", title="pooled-feature KD (timm's FeatureDistillationTask)")
class FeatureDistillation(DistillationMethod):
    config_class = FeatureKDConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        for view in (student, teacher):
            view.capture_pre_logits = True
        student_dim, teacher_dim = student.pre_logits_dim(), teacher.pre_logits_dim()
        # As timm: a projection only where the widths differ.
        self.projection = nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else nn.Identity()

    def forward(self, student, teacher, labels):
        mse = F.mse_loss(self.projection(student.pre_logits.float()), teacher.pre_logits.float())
        return {"ce": self.supervised_loss(student.logits, labels), "feature": self.config.feature_kd_weight * mse}
