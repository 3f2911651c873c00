"""``ofa``: One-for-All KD (Hao et al., NeurIPS 2023).

Every student stage is tapped: stages 1-3 through a small branch that projects the feature into
logit space, stage 4 through the student's own head; each gets the OFA loss against the teacher.
Our branch is deliberately light (1x1 conv, global pooling, norm, linear) rather than OFA's
stack of blocks, so its cost stays comparable with the other methods'; see the benchmarks.
"""

from torch import nn

from ..backbones import StageInfo, to_map
from ..losses import ofa_loss
from .base import DistillationMethod, register_method


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


@register_method("ofa")
class OneForAll(DistillationMethod):
    def __init__(self, student, teacher, args):
        super().__init__(student, teacher, args)
        num_labels = student.model.config.num_labels
        self.branches = nn.ModuleList(
            LogitBranch(info, num_labels, args.projector_dim) for info in student.stage_infos[:3]
        )
        self.gamma, self.temperature = args.ofa_gamma, args.ofa_temperature
        self.logit_weight = args.logit_weight

    def forward(self, student, teacher, labels):
        losses = {"ce": self.supervised_loss(student.logits, labels)}
        stage_logits = [branch(f) for branch, f in zip(self.branches, student.features)] + [student.logits]
        for stage, logits in enumerate(stage_logits, start=1):
            term = ofa_loss(logits, teacher.logits, labels, self.gamma, self.temperature)
            losses[f"ofa_stage{stage}"] = self.logit_weight * term
        return losses
