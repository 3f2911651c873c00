"""``rsd``: Redundancy Suppression Distillation (Zhang, Liu, Ran, Ma; ICCV 2025; docs/method.md, "rsd").

The student's pooled final feature (what its classifier reads), through a small projector to the
teacher's width, is aligned with the teacher's by the redundancy-suppression loss, beside the
cross-entropy; no logit term in the published method::

    L = CE(S) + rsd_weight * RSD(projector(s), t)       [+ rsd_logit_weight * L_logit(S -> T)]

:class:`RSDLossOptions` holds the loss's options, shared with ``fbt --fbt_feature_loss rsd``.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from ..backbones import StagedBackbone, StagedOutput
from ..losses import RSDProjector, redundancy_suppression_loss, smoothed_dim, spatial_smooth
from .base import DistillationMethod, MethodConfig, option, register_method
from .ofa import LogitLossOptions

RSDFeature = Literal["pre_logits", "stage4"]


@dataclass
class RSDLossOptions(MethodConfig):
    """RSD's loss and projector, shared by ``rsd`` and ``fbt`` (``--fbt_feature_loss rsd``)."""

    rsd_weight: float = option(0.1, "Weight of each redundancy-suppression term.")
    rsd_kappa: float = option(0.01, "Weight of the off-diagonal (decorrelation) part of the RSD loss, against 1 for the diagonal.")
    rsd_projector_expansion: int = option(2, "The RSD projector's hidden width, in multiples of its input width.")

    def __post_init__(self):
        super().__post_init__()
        if self.rsd_kappa < 0:
            raise ValueError(f"rsd_kappa weighs a sum of squares, 0 or more, got {self.rsd_kappa}")
        if self.rsd_projector_expansion < 1:
            raise ValueError(f"rsd_projector_expansion is a positive integer, got {self.rsd_projector_expansion}")

    def rsd_projector(self, in_dim: int, out_dim: int) -> RSDProjector:
        return RSDProjector(in_dim, out_dim, self.rsd_projector_expansion)

    def rsd_term(self, projector: RSDProjector, learner: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``rsd_weight * RSD(projector(learner), source)``; 0 for a batch of one, which has no batch statistics
        (every process gets the same batch size, so all of them skip the gather together)."""
        if learner.shape[0] < 2:
            return learner.new_zeros(())
        return self.rsd_weight * redundancy_suppression_loss(projector(learner), source, self.rsd_kappa)


@dataclass
class RSDConfig(RSDLossOptions, LogitLossOptions):
    rsd_feature: RSDFeature = option(
        "pre_logits",
        "The features RSD aligns: 'pre_logits' (the pooled vector each classifier reads: the paper's) or 'stage4' "
        "(the final stage's output, averaged over space).",
    )
    rsd_logit_loss: Literal["none", "kd", "ofa"] = option(
        "none",
        "A logit term beside RSD's (beyond the paper): 'none' (the paper's), 'kd' (--kd_temperature) or 'ofa' "
        "(--ofa_gamma, --ofa_temperature), weighted --rsd_logit_weight.",
    )
    rsd_logit_weight: float = option(1.0, "Weight of the logit term (with --rsd_logit_loss kd or ofa).")


def pooled_feature(view: StagedBackbone, output: StagedOutput, feature: RSDFeature) -> torch.Tensor:
    """A model's feature as RSD reads it, ``(B, C)``."""
    if feature == "pre_logits":
        return output.pre_logits
    return spatial_smooth(output.features[3], view.stage_infos[3])


@register_method("rsd", title="RSD (Redundancy Suppression Distillation)")
class RedundancySuppression(DistillationMethod):
    papers = ("rsd",)
    config_class = RSDConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        config = self.config
        if config.rsd_feature == "pre_logits":
            for view in (student, teacher):
                view.capture_pre_logits = True
            dims = student.pre_logits_dim(), teacher.pre_logits_dim()
        else:
            dims = smoothed_dim(student.stage_infos[3]), smoothed_dim(teacher.stage_infos[3])
        self.projector = config.rsd_projector(*dims)

    def forward(self, student, teacher, labels):
        config = self.config
        student_feature = pooled_feature(self.student_view, student, config.rsd_feature)
        teacher_feature = pooled_feature(self.teacher_view, teacher, config.rsd_feature)
        losses = {
            "ce": self.supervised_loss(student.logits, labels),
            "rsd": config.rsd_term(self.projector, student_feature, teacher_feature.detach()),
        }
        if config.rsd_logit_loss != "none":
            logit_loss = config.logit_loss(config.rsd_logit_loss, student.logits, teacher.logits, labels)
            losses[config.rsd_logit_loss] = config.rsd_logit_weight * logit_loss
        return losses
