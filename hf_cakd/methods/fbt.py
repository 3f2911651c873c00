"""``fbt``: Fuse Before Transfer (method.md sections 2, 3 and 5).

An assistant F, fused from the CNN's early stages and the attention/MLP model's last stage,
sits between teacher T and student S. Knowledge flows along three pairs, (T, S), (T, F) and
(F, S), each with a spatial-agnostic InfoNCE on the smoothed final-stage features and a logit
loss (OFA's by default), plus cross-entropy for S and F::

    L = CE(S) + CE(F) + sum_pairs w_feat * InfoNCE(X, Y) + w_logit * L_logit(X -> Y)

w_feat is ``infonce_weight``, 0.3 by default rather than method.md's "about 1": at 1.0 the quick
benchmark's CNN student scored 7.6 points lower (benchmarks/accuracy/experiments.md).

F reuses the stage-3 activation its CNN prefix computed in the teacher's or student's own
forward pass, so F costs one bridge plus one stage.
"""

from torch import nn

from ..assistant import AssistantModel
from ..losses import FeatureProjector, LearnableTemperature, info_nce, kd_loss, ofa_loss, smoothed_dim, spatial_smooth
from .base import DistillationMethod, register_method

# (who teaches, who learns) for the three knowledge paths.
PAIRS = (("teacher", "student"), ("teacher", "assistant"), ("assistant", "student"))
LOGIT_LOSSES = ("ofa", "kd")


@register_method("fbt")
class FuseBeforeTransfer(DistillationMethod):
    def __init__(self, student, teacher, args):
        super().__init__(student, teacher, args)
        if args.fbt_logit_loss not in LOGIT_LOSSES:
            raise ValueError(f"fbt_logit_loss must be one of {LOGIT_LOSSES}, got {args.fbt_logit_loss!r}")
        self.assistant = AssistantModel.from_teacher_student(
            teacher.model, student.model, teacher.image_size, student.image_size, bridge_type=args.bridge_type
        )
        self.prefix_role = self.assistant.config.prefix_role
        self.pooling, self.use_cls = args.infonce_pooling, args.infonce_use_cls
        self.final_infos = {
            "teacher": teacher.stage_infos[3],
            "student": student.stage_infos[3],
            "assistant": self.assistant.suffix.stage_infos[3],
        }
        self.projectors = nn.ModuleDict(
            {
                name: FeatureProjector(smoothed_dim(info, self.pooling, self.use_cls), args.projector_dim)
                for name, info in self.final_infos.items()
            }
        )
        self.temperatures = nn.ModuleDict(
            {f"{x}_{y}": LearnableTemperature(args.infonce_temperature) for x, y in PAIRS}
        )
        self.gather_negatives = args.gather_negatives
        self.detach_assistant = args.detach_assistant
        self.infonce_weight, self.logit_weight = args.infonce_weight, args.logit_weight
        self.logit_loss = args.fbt_logit_loss
        self.kd_temperature = args.kd_temperature
        self.ofa_gamma, self.ofa_temperature = args.ofa_gamma, args.ofa_temperature

    def _logit_loss(self, learner_logits, teacher_logits, labels):
        if self.logit_loss == "kd":
            return kd_loss(learner_logits, teacher_logits, self.kd_temperature)
        return ofa_loss(learner_logits, teacher_logits, labels, self.ofa_gamma, self.ofa_temperature)

    def forward(self, student, teacher, labels):
        prefix_output = teacher if self.prefix_role == "teacher" else student
        fused = self.assistant(prefix_stage3=prefix_output.features[2])
        features = {"teacher": teacher.features[3], "student": student.features[3], "assistant": fused.last_hidden_state}
        logits = {"teacher": teacher.logits, "student": student.logits, "assistant": fused.logits}
        embeddings = {
            name: self.projectors[name](spatial_smooth(feature, self.final_infos[name], self.pooling, self.use_cls))
            for name, feature in features.items()
        }
        losses = {
            "ce": self.supervised_loss(student.logits, labels),
            "ce_assistant": self.supervised_loss(fused.logits, labels),
        }
        for source, learner in PAIRS:
            source_embedding, source_logits = embeddings[source], logits[source]
            if source == "assistant" and self.detach_assistant:
                # F teaches S as a teacher would: S's losses do not move F.
                source_embedding, source_logits = source_embedding.detach(), source_logits.detach()
            pair = f"{source}_{learner}"
            tau = self.temperatures[pair]()
            nce = info_nce(source_embedding, embeddings[learner], tau, self.gather_negatives)
            losses[f"infonce_{pair}"] = self.infonce_weight * nce
            losses[f"{self.logit_loss}_{pair}"] = self.logit_weight * self._logit_loss(
                logits[learner], source_logits, labels
            )
        return losses

    def learned_temperatures(self):
        return {f"tau_{pair}": module().item() for pair, module in self.temperatures.items()}
