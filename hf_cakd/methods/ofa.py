"""``ofa``: One-for-All KD (Hao et al., NeurIPS 2023).

Student stages are tapped through small branches that project a stage output into logit space;
each branch, and the student's own logits, gets the OFA loss against the teacher's logits::

    L = CE(S) + ofa_branch_weight * sum_{k in ofa_stages} L_OFA(branch_k(f_k))
              + ofa_logit_weight * L_OFA(S's logits)          (when ofa_final_logits)

Defaults (``ofa_stages=1,2,3``, both weights 1): branches on stages 1-3, and stage 4 read through
the student's own head; the terms are ``ofa_stage1..3`` and ``ofa_stage4`` (the own logits).

The published recipe (official code, Hao840/OFAKD ``distillers/ofa.py``) is
``--ofa_stages 1,2,3,4 --ofa_branch_weight 0.1`` (0.1: the authors' CIFAR-100 setting; ImageNet
uses 1): a branch on every stage including stage 4, their sum weighted by ``ofa_branch_weight``, plus
the OFA loss on the student's final logits at ``ofa_logit_weight`` = 1. With a stage-4 branch the
terms are ``ofa_stage1..4`` (branches) and ``ofa_logits`` (the own logits).

Our branch is deliberately light (1x1 conv, global pooling, norm, linear) rather than OFA's
stack of blocks, so its cost stays comparable with the other methods'; see the benchmarks.
"""

from dataclasses import dataclass

from torch import nn

from ..losses import LogitBranch, ofa_loss
from .base import DistillationMethod, MethodConfig, Stage, num_labels_of, option, register_method
from .kd import KDLossOptions

__all__ = ["LogitBranch", "LogitLossOptions", "OFAConfig", "OFALossOptions", "OneForAll"]


@dataclass
class OFALossOptions(MethodConfig):
    """OFA's logit loss, shared by ``ofa`` and ``fbt`` (its default logit loss)."""

    ofa_gamma: float = option(1.0, "OFA's exponent gamma >= 1: 1 is cross-entropy to the teacher's soft targets, more weighs the label up.")
    ofa_temperature: float = option(1.0, "Temperature of the OFA loss (both distributions; no T^2 factor).")

    def __post_init__(self):
        super().__post_init__()
        if self.ofa_gamma < 1:
            raise ValueError(f"ofa_gamma must be >= 1 (less would down-weight the label), got {self.ofa_gamma}")
        if self.ofa_temperature <= 0:
            raise ValueError(f"ofa_temperature must be positive, got {self.ofa_temperature}")

    def ofa_logit_loss(self, learner_logits, teacher_logits, labels):
        return ofa_loss(learner_logits, teacher_logits, labels, self.ofa_gamma, self.ofa_temperature)


@dataclass
class LogitLossOptions(OFALossOptions, KDLossOptions):
    """The two logit losses a method may choose between by name (``fbt_logit_loss``, ``rsd_logit_loss``)."""

    def logit_loss(self, kind: str, learner_logits, teacher_logits, labels):
        """The ``kind`` ("kd" or "ofa") logit loss of ``learner_logits`` against ``teacher_logits``."""
        if kind == "kd":
            return self.kd_logit_loss(learner_logits, teacher_logits)
        return self.ofa_logit_loss(learner_logits, teacher_logits, labels)


@dataclass
class OFAConfig(OFALossOptions):
    ofa_stages: tuple[Stage, ...] = option(
        (1, 2, 3),
        "Student stages that get a logit branch, comma-separated: '1,2,3' reads stage 4 through the student's own "
        "head; '1,2,3,4' with --ofa_branch_weight 0.1 is the published recipe; '' for none.",
    )
    ofa_branch_weight: float = option(1.0, "Weight of each branch's OFA term.")
    ofa_branch_dim: int = option(256, "Width of each stage branch (its 1x1 convolution's output channels).")
    ofa_final_logits: bool = option(True, "Also apply the OFA loss to the student's own logits, weighted --ofa_logit_weight.")
    ofa_logit_weight: float = option(1.0, "Weight of the OFA term on the student's own logits.")

    @property
    def final_logits_term(self) -> str:
        """The name of the own-logits term: ``ofa_stage4`` (it stands in for stage 4) unless stage 4 has a branch."""
        return "ofa_logits" if 4 in self.ofa_stages else "ofa_stage4"


@register_method("ofa", title="OFA (One-for-All) distillation")
class OneForAll(DistillationMethod):
    papers = ("ofa",)
    config_class = OFAConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        num_labels = num_labels_of(student)
        # One branch per selected stage, in stage order (branches.0 is the first selected stage).
        self.branches = nn.ModuleList(
            LogitBranch(student.stage_infos[stage - 1], num_labels, config.ofa_branch_dim) for stage in config.ofa_stages
        )

    def forward(self, student, teacher, labels):
        config = self.config
        losses = {"ce": self.supervised_loss(student.logits, labels)}
        for stage, branch in zip(config.ofa_stages, self.branches):
            branch_logits = branch(student.features[stage - 1])
            losses[f"ofa_stage{stage}"] = config.ofa_branch_weight * config.ofa_logit_loss(branch_logits, teacher.logits, labels)
        if config.ofa_final_logits:
            own = config.ofa_logit_loss(student.logits, teacher.logits, labels)
            losses[config.final_logits_term] = config.ofa_logit_weight * own
        return losses
