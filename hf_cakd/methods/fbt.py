"""``fbt``: Fuse Before Transfer (Li et al., ICCV 2025; docs/method.md).

An assistant F, fused from the CNN's early stages and the attention/MLP model's last stage,
sits between teacher T and student S. Knowledge flows along three pairs, (T, S), (T, F) and
(F, S), each with a spatial-agnostic InfoNCE on the smoothed final-stage features and a logit
loss (OFA's by default), plus cross-entropy for S and F::

    L = CE(S) + CE(F) + sum_pairs w_feat * InfoNCE(X, Y) + w_logit * L_logit(X -> Y)

w_feat is ``infonce_weight``, 0.3 by default rather than the paper's "about 1": at 1.0 the quick
benchmark's CNN student scored 7.6 points lower (benchmarks/accuracy/experiments.md).

F reuses the stage-3 activation its CNN prefix computed in the teacher's or student's own
forward pass, so F costs one bridge plus one stage.
"""

from dataclasses import dataclass, field

from torch import nn

from ..assistant import AssistantModel
from ..losses import FeatureProjector, LearnableTemperature, info_nce, kd_loss, ofa_loss, smoothed_dim, spatial_smooth
from .base import DistillationMethod, MethodConfig, register_method

# (who teaches, who learns) for the three knowledge paths.
PAIRS = (("teacher", "student"), ("teacher", "assistant"), ("assistant", "student"))
LOGIT_LOSSES = ("ofa", "kd")
BRIDGE_TYPES = ("auto", "attention", "linear")


@dataclass
class FBTConfig(MethodConfig):
    fbt_logit_loss: str = field(default="ofa", metadata={"help": "FBT's logit loss: 'ofa' or 'kd'."})
    logit_weight: float = field(default=1.0, metadata={"help": "Weight of each of FBT's three logit terms."})
    kd_temperature: float = field(default=4.0, metadata={"help": "Temperature of the logit loss when it is 'kd'."})
    ofa_gamma: float = field(default=1.0, metadata={"help": "OFA exponent gamma >= 1 (1: soft-target CE)."})
    ofa_temperature: float = field(default=1.0, metadata={"help": "Temperature of the OFA loss."})
    infonce_weight: float = field(
        default=0.3,
        metadata={
            "help": "Weight of each of FBT's three InfoNCE terms (0.3: on the quick benchmark 1.0 left a CNN student "
            "7.6 points lower; see benchmarks/accuracy/experiments.md)."
        },
    )
    infonce_pooling: str = field(
        default="avg", metadata={"help": "Spatial smoothing: 'avg' (global average) or k for k x k pooling."}
    )
    infonce_use_cls: bool = field(default=False, metadata={"help": "Use the class token instead of pooling."})
    projector_dim: int = field(default=256, metadata={"help": "Shared dimension of the InfoNCE projectors."})
    infonce_temperature: float = field(default=0.07, metadata={"help": "Initial learnable InfoNCE temperature."})
    gather_negatives: bool = field(
        default=True, metadata={"help": "Gather InfoNCE negatives across processes (gradient-preserving)."}
    )
    detach_assistant: bool = field(
        default=True, metadata={"help": "Detach the assistant when it teaches the student."}
    )
    bridge_type: str = field(
        default="auto", metadata={"help": "'auto', 'attention' or 'linear' bridge in the assistant."}
    )

    def __post_init__(self):
        if self.fbt_logit_loss not in LOGIT_LOSSES:
            raise ValueError(f"fbt_logit_loss must be one of {LOGIT_LOSSES}, got {self.fbt_logit_loss!r}")
        if self.bridge_type not in BRIDGE_TYPES:
            raise ValueError(f"bridge_type must be one of {BRIDGE_TYPES}, got {self.bridge_type!r}")
        pooling = str(self.infonce_pooling)
        if pooling != "avg" and not (pooling.isdigit() and int(pooling) > 0):
            raise ValueError(f"infonce_pooling must be 'avg' or a positive integer k (k x k pooling), got {pooling!r}")
        self.infonce_pooling = pooling

    @property
    def pooling(self) -> str | int:
        return "avg" if self.infonce_pooling == "avg" else int(self.infonce_pooling)


@register_method("fbt", title="FBT (Fuse Before Transfer)")
class FuseBeforeTransfer(DistillationMethod):
    papers = ("fbt", "ofa")  # its logit loss is OFA's
    config_class = FBTConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.assistant = AssistantModel.from_views(teacher, student, bridge_type=config.bridge_type)
        self.prefix_role = self.assistant.config.prefix_role
        self.final_infos = {
            "teacher": teacher.stage_infos[3],
            "student": student.stage_infos[3],
            "assistant": self.assistant.suffix.stage_infos[3],
        }
        self.projectors = nn.ModuleDict(
            {
                name: FeatureProjector(smoothed_dim(info, config.pooling, config.infonce_use_cls), config.projector_dim)
                for name, info in self.final_infos.items()
            }
        )
        self.temperatures = nn.ModuleDict(
            {f"{x}_{y}": LearnableTemperature(config.infonce_temperature) for x, y in PAIRS}
        )

    def _logit_loss(self, learner_logits, teacher_logits, labels):
        config = self.config
        if config.fbt_logit_loss == "kd":
            return kd_loss(learner_logits, teacher_logits, config.kd_temperature)
        return ofa_loss(learner_logits, teacher_logits, labels, config.ofa_gamma, config.ofa_temperature)

    def _assistant_output(self, student, teacher):
        prefix_output = teacher if self.prefix_role == "teacher" else student
        return self.assistant(prefix_stage3=prefix_output.features[2])

    def forward(self, student, teacher, labels):
        config = self.config
        fused = self._assistant_output(student, teacher)
        features = {"teacher": teacher.features[3], "student": student.features[3], "assistant": fused.last_hidden_state}
        logits = {"teacher": teacher.logits, "student": student.logits, "assistant": fused.logits}
        embeddings = {
            name: self.projectors[name](
                spatial_smooth(feature, self.final_infos[name], config.pooling, config.infonce_use_cls)
            )
            for name, feature in features.items()
        }
        losses = {
            "ce": self.supervised_loss(student.logits, labels),
            "ce_assistant": self.supervised_loss(fused.logits, labels),
        }
        for source, learner in PAIRS:
            source_embedding, source_logits = embeddings[source], logits[source]
            if source == "assistant" and config.detach_assistant:
                # F teaches S as a teacher would: S's losses do not move F.
                source_embedding, source_logits = source_embedding.detach(), source_logits.detach()
            pair = f"{source}_{learner}"
            tau = self.temperatures[pair]()
            nce = info_nce(source_embedding, embeddings[learner], tau, config.gather_negatives)
            losses[f"infonce_{pair}"] = config.infonce_weight * nce
            losses[f"{config.fbt_logit_loss}_{pair}"] = config.logit_weight * self._logit_loss(
                logits[learner], source_logits, labels
            )
        return losses

    def no_weight_decay_names(self):
        # Weight decay would pull the learnable temperatures towards tau = 1.
        return {name for name, _ in self.temperatures.named_parameters(prefix="temperatures")}

    def log_values(self):
        return {f"tau_{pair}": module().item() for pair, module in self.temperatures.items()}

    def evaluation_logits(self, student, teacher):
        return {"assistant": self._assistant_output(student, teacher).logits}
