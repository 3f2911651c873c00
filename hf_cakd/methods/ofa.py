"""``ofa``: One-for-All KD (Hao et al., NeurIPS 2023).

Every student stage is tapped: stages 1-3 through a small branch that projects the feature into
logit space, stage 4 through the student's own head; each gets the OFA loss against the teacher.
Our branch is deliberately light (1x1 conv, global pooling, norm, linear) rather than OFA's
stack of blocks, so its cost stays comparable with the other methods'; see the benchmarks.
"""

from dataclasses import dataclass, field

from torch import nn

from ..backbones import StageInfo, to_map
from ..losses import ofa_loss
from .base import DistillationMethod, MethodConfig, register_method


@dataclass
class OFAConfig(MethodConfig):
    ofa_gamma: float = field(default=1.0, metadata={"help": "OFA exponent gamma >= 1 (1: soft-target CE)."})
    ofa_temperature: float = field(default=1.0, metadata={"help": "Temperature of the OFA loss."})
    logit_weight: float = field(default=1.0, metadata={"help": "Weight of each stage's OFA term."})
    projector_dim: int = field(default=256, metadata={"help": "Width of OFA's stage branches."})


class LogitBranch(nn.Module):
    """Project an intermediate stage output into logit space."""

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

    def forward(self, feature):
        return self.net(to_map(feature, self.info))


@register_method("ofa", title="OFA (One-for-All) distillation")
class OneForAll(DistillationMethod):
    papers = ("ofa",)
    config_class = OFAConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        num_labels = student.model.config.num_labels
        self.branches = nn.ModuleList(
            LogitBranch(info, num_labels, config.projector_dim) for info in student.stage_infos[:3]
        )

    def forward(self, student, teacher, labels):
        config = self.config
        losses = {"ce": self.supervised_loss(student.logits, labels)}
        stage_logits = [branch(f) for branch, f in zip(self.branches, student.features)] + [student.logits]
        for stage, logits in enumerate(stage_logits, start=1):
            term = ofa_loss(logits, teacher.logits, labels, config.ofa_gamma, config.ofa_temperature)
            losses[f"ofa_stage{stage}"] = config.logit_weight * term
        return losses
