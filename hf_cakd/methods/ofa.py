"""``ofa``: One-for-All KD (Hao et al., NeurIPS 2023).

Student stages are tapped through small branches that project a stage output into logit space;
each branch, and the student's own logits, gets the OFA loss against the teacher's logits::

    L = CE(S) + ofa_loss_weight * sum_{k in ofa_stages} L_OFA(branch_k(f_k))
              + logit_weight * L_OFA(S's logits)          (when ofa_final_logits)

Defaults (``ofa_stages=1,2,3``, both weights 1): branches on stages 1-3, and stage 4 read through
the student's own head; the terms are ``ofa_stage1..3`` and ``ofa_stage4`` (the own logits).

The published recipe (official code, Hao840/OFAKD ``distillers/ofa.py``) is
``--ofa_stages 1,2,3,4 --ofa_loss_weight 0.1`` (0.1: the authors' CIFAR-100 setting; ImageNet
uses 1): a branch on every stage including stage 4, their sum weighted by ``ofa_loss_weight``, plus
the OFA loss on the student's final logits at ``logit_weight`` = 1. With a stage-4 branch the
terms are ``ofa_stage1..4`` (branches) and ``ofa_logits`` (the own logits).

Our branch is deliberately light (1x1 conv, global pooling, norm, linear) rather than OFA's
stack of blocks, so its cost stays comparable with the other methods'; see the benchmarks.
"""

from dataclasses import dataclass, field

from torch import nn

from ..losses import LogitBranch, ofa_loss
from .base import DistillationMethod, MethodConfig, num_labels_of, parse_stages, register_method

__all__ = ["LogitBranch", "OFAConfig", "OneForAll"]


@dataclass
class OFAConfig(MethodConfig):
    ofa_gamma: float = field(default=1.0, metadata={"help": "OFA exponent gamma >= 1 (1: soft-target CE)."})
    ofa_temperature: float = field(default=1.0, metadata={"help": "Temperature of the OFA loss."})
    logit_weight: float = field(
        default=1.0, metadata={"help": "Weight of the OFA term on the student's own logits (ofa_final_logits)."}
    )
    projector_dim: int = field(default=256, metadata={"help": "Width of OFA's stage branches."})
    ofa_stages: str = field(
        default="1,2,3",
        metadata={
            "help": "Student stages that get a logit branch, e.g. '1,2,3' (default; stage 4 is then read through "
            "the student's own head) or '1,2,3,4' (the published recipe, with --ofa_loss_weight 0.1); '' for none."
        },
    )
    ofa_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of each branch's OFA term (the published recipe: 0.1 on CIFAR-100, 1 on ImageNet)."},
    )
    ofa_final_logits: bool = field(
        default=True, metadata={"help": "Also apply the OFA loss to the student's own logits, weighted logit_weight."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.ofa_stages = ",".join(map(str, parse_stages(self.ofa_stages, "ofa_stages")))

    @property
    def stages(self) -> tuple[int, ...]:
        return parse_stages(self.ofa_stages, "ofa_stages")

    @property
    def final_logits_term(self) -> str:
        """The name of the own-logits term: ``ofa_stage4`` (it stands in for stage 4) unless stage 4 has a branch."""
        return "ofa_logits" if 4 in self.stages else "ofa_stage4"


@register_method("ofa", title="OFA (One-for-All) distillation")
class OneForAll(DistillationMethod):
    papers = ("ofa",)
    config_class = OFAConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        num_labels = num_labels_of(student)
        self.branch_stages = config.stages
        # One branch per selected stage, in stage order (branches.0 is the first selected stage).
        self.branches = nn.ModuleList(
            LogitBranch(student.stage_infos[stage - 1], num_labels, config.projector_dim) for stage in self.branch_stages
        )

    def _ofa(self, logits, teacher, labels):
        return ofa_loss(logits, teacher.logits, labels, self.config.ofa_gamma, self.config.ofa_temperature)

    def forward(self, student, teacher, labels):
        config = self.config
        losses = {"ce": self.supervised_loss(student.logits, labels)}
        for stage, branch in zip(self.branch_stages, self.branches):
            branch_logits = branch(student.features[stage - 1])
            losses[f"ofa_stage{stage}"] = config.ofa_loss_weight * self._ofa(branch_logits, teacher, labels)
        if config.ofa_final_logits:
            losses[config.final_logits_term] = config.logit_weight * self._ofa(student.logits, teacher, labels)
        return losses
