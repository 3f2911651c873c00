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

Options beyond the paper, all off by default (the defaults are the recipe above):

* ``fbt_deep_supervision "1,2,3"``: a logit branch (OFA's, hf_cakd.losses.LogitBranch) on each
  listed student stage, trained with the logit loss against the teacher's logits and weighted
  ``fbt_deep_supervision_weight``; terms ``deep_supervision_stage<k>``.
* ``fbt_assistant_warmup_steps N``: the F -> S terms (``infonce_assistant_student`` and the
  ``<logit loss>_assistant_student`` term) are multiplied by ``min(1, step / N)``, ``step`` being the
  optimizer steps done (the trainer's :meth:`set_progress`); logged as ``ramp_assistant_student``.
* ``fbt_assistant_gate ce``: the F -> S terms count only on batches where F's cross-entropy is
  below the student's (both detached; each process decides on its own batch); logged as
  ``gate_assistant_student`` (the last batch's 0 or 1).
* ``infonce_feature pre_logits``: InfoNCE on what each classifier reads (the vector entering the
  head's last Linear: pooled, and normed where the model norms it; hf_cakd.backbones.heads)
  instead of the smoothed stage-4 features. F's pre-logits come from the head it borrows.
* ``infonce_mask_same_label``: images of the same class are not InfoNCE negatives.
* ``bridge_upsample``: a CNN stage-3 map smaller than the suffix's grid (2x2 against a 32 px ViT's
  8x8) is bridged at its own grid (``false``), so F's last stage runs on 4 tokens, not 64 invented
  ones; only suffixes that run on any grid take it (``StagedBackbone.runs_on_any_grid``: ViT, DeiT).
  ``true`` upsamples it to the suffix's grid; ``auto`` (default) is ``false`` where the suffix is a
  student's that runs on any grid (a frozen teacher's last stage keeps the grid it was trained on).
* ``bridge_downsample k``: the bridged grid is divided by ``k`` in each direction, so F's last
  stage runs on ``k**2`` times fewer tokens (a ViT-B/16 teacher's 14x14 at 224 px becomes 7x7).
  Only suffixes that run on any grid take it.
* ``bridge_alignment_weight w``: a term ``bridge_alignment`` pulls the bridge's output towards what
  the suffix model itself feeds its last stage on the same image (its own stage-3 output, pooled to
  the bridged grid, detached): F's last stage, a frozen teacher's in particular, then sees inputs
  like those it was trained on. The error is relative (divided by the target's mean square).
* ``fbt_transfer_paths``: which of the three paths transfer (comma list of ``teacher_student``,
  ``teacher_assistant``, ``assistant_student``; all by default). Dropping one is the paper's
  ablation; the cross-entropy terms of S and F stay.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..assistant import AssistantModel
from ..backbones import to_map
from ..losses import (
    FeatureProjector,
    LearnableTemperature,
    LogitBranch,
    info_nce,
    kd_loss,
    ofa_loss,
    smoothed_dim,
    spatial_smooth,
)
from .base import DistillationMethod, MethodConfig, num_labels_of, parse_stages, register_method

# (who teaches, who learns) for the three knowledge paths.
PAIRS = (("teacher", "student"), ("teacher", "assistant"), ("assistant", "student"))
PATH_NAMES = tuple(f"{source}_{learner}" for source, learner in PAIRS)
LOGIT_LOSSES = ("ofa", "kd")
BRIDGE_TYPES = ("auto", "attention", "linear")
BRIDGE_UPSAMPLING = {"auto": "auto", "true": True, "false": False}  # flag value -> AssistantModel.from_views
INFONCE_FEATURES = ("stage4", "pre_logits")
ASSISTANT_GATES = ("none", "ce")


@dataclass
class FBTConfig(MethodConfig):
    stage_split: str = field(
        default="ofa",
        metadata={
            "help": "How an isotropic model's blocks (ViT, Mixer) form its four stages: 'ofa' (default for fbt: OFA-KD's "
            "boundaries, 12 -> 2/2/6/2, so F re-runs a small last stage: with an upsampling bridge 1.35x kd's FLOPs on "
            "the speed pair instead of 1.66x, and +3.4 points for a CNN student on the validation screen, see "
            "benchmarks/accuracy/experiments.md) or 'even' (12 -> 3/3/3/3)."
        },
    )
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
    bridge_upsample: str = field(
        default="auto",
        metadata={
            "help": "A CNN stage-3 map smaller than the suffix's grid: 'auto' (default) keeps it where the suffix is "
            "a student that runs on any grid (ViT, DeiT: 1.04x kd's FLOPs instead of 1.35x, see "
            "benchmarks/accuracy/experiments.md) and upsamples it for a teacher's suffix and for Mixer and Swin; "
            "'true' always upsamples it to the suffix's grid; 'false' never does (FBT's bridge only downsamples)."
        },
    )
    bridge_downsample: int = field(
        default=1,
        metadata={
            "help": "Divide the grid the bridge hands F's last stage by this factor in each direction (2: a 14x14 "
            "grid becomes 7x7, a quarter of that stage's work). Needs a last stage that runs on any grid (ViT, DeiT)."
        },
    )
    bridge_alignment_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a term that pulls the bridge's output towards the suffix model's own stage-3 output "
            "on the same image (the input its last stage sees in its own forward); 0 (default): off."
        },
    )
    fbt_deep_supervision: str = field(
        default="",
        metadata={
            "help": "Student stages (e.g. '1,2,3') that get an OFA-style logit branch trained against the teacher's "
            "logits with FBT's logit loss; '' (default): none."
        },
    )
    fbt_deep_supervision_weight: float = field(
        default=0.1, metadata={"help": "Weight of each deep-supervision branch term (fbt_deep_supervision)."}
    )
    fbt_assistant_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Ramp the assistant -> student terms in over this many optimizer steps, weight "
            "min(1, step / N); 0 (default): full weight from the start."
        },
    )
    fbt_assistant_gate: str = field(
        default="none",
        metadata={
            "help": "'ce': the assistant -> student terms count only on batches where the assistant's "
            "cross-entropy is below the student's; 'none' (default): always."
        },
    )
    infonce_feature: str = field(
        default="stage4",
        metadata={
            "help": "What InfoNCE contrasts: 'stage4' (default: the smoothed final-stage features) or 'pre_logits' "
            "(the pooled vector each classifier reads; infonce_pooling and infonce_use_cls do not apply)."
        },
    )
    infonce_mask_same_label: bool = field(
        default=False, metadata={"help": "Leave images of the same class out of the InfoNCE negatives."}
    )
    fbt_transfer_paths: str = field(
        default=",".join(PATH_NAMES),
        metadata={"help": f"Knowledge paths that transfer, comma-separated from {', '.join(PATH_NAMES)} (all)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.fbt_logit_loss not in LOGIT_LOSSES:
            raise ValueError(f"fbt_logit_loss must be one of {LOGIT_LOSSES}, got {self.fbt_logit_loss!r}")
        if self.bridge_type not in BRIDGE_TYPES:
            raise ValueError(f"bridge_type must be one of {BRIDGE_TYPES}, got {self.bridge_type!r}")
        self.bridge_upsample = str(self.bridge_upsample).lower()  # a config file may hold true/false
        if self.bridge_upsample not in BRIDGE_UPSAMPLING:
            raise ValueError(f"bridge_upsample must be one of {tuple(BRIDGE_UPSAMPLING)}, got {self.bridge_upsample!r}")
        pooling = str(self.infonce_pooling)
        if pooling != "avg" and not (pooling.isdigit() and int(pooling) > 0):
            raise ValueError(f"infonce_pooling must be 'avg' or a positive integer k (k x k pooling), got {pooling!r}")
        self.infonce_pooling = pooling
        self.fbt_deep_supervision = ",".join(map(str, parse_stages(self.fbt_deep_supervision, "fbt_deep_supervision")))
        if self.bridge_downsample < 1:
            raise ValueError(f"bridge_downsample must be a positive integer, got {self.bridge_downsample}")
        if self.bridge_alignment_weight < 0:
            raise ValueError(f"bridge_alignment_weight must be >= 0, got {self.bridge_alignment_weight}")
        if self.fbt_assistant_warmup_steps < 0:
            raise ValueError(f"fbt_assistant_warmup_steps must be >= 0, got {self.fbt_assistant_warmup_steps}")
        if self.fbt_assistant_gate not in ASSISTANT_GATES:
            raise ValueError(f"fbt_assistant_gate must be one of {ASSISTANT_GATES}, got {self.fbt_assistant_gate!r}")
        if self.infonce_feature not in INFONCE_FEATURES:
            raise ValueError(f"infonce_feature must be one of {INFONCE_FEATURES}, got {self.infonce_feature!r}")
        if self.infonce_feature == "pre_logits" and (self.infonce_use_cls or self.infonce_pooling != "avg"):
            raise ValueError("infonce_feature 'pre_logits' is already pooled: leave infonce_pooling and infonce_use_cls unset.")
        paths = [path.strip() for path in str(self.fbt_transfer_paths).split(",") if path.strip()]
        unknown = sorted(set(paths) - set(PATH_NAMES))
        if unknown or not paths:
            raise ValueError(
                f"fbt_transfer_paths is a comma list of {', '.join(PATH_NAMES)}; got {self.fbt_transfer_paths!r}"
            )
        self.fbt_transfer_paths = ",".join(name for name in PATH_NAMES if name in paths)

    @property
    def transfer_pairs(self) -> tuple[tuple[str, str], ...]:
        """The (source, learner) pairs that transfer, in PAIRS order."""
        paths = self.fbt_transfer_paths.split(",")
        return tuple(pair for pair, name in zip(PAIRS, PATH_NAMES) if name in paths)

    @property
    def deep_supervision_stages(self) -> tuple[int, ...]:
        return parse_stages(self.fbt_deep_supervision, "fbt_deep_supervision")

    @property
    def pooling(self) -> str | int:
        return "avg" if self.infonce_pooling == "avg" else int(self.infonce_pooling)


@register_method("fbt", title="FBT (Fuse Before Transfer)")
class FuseBeforeTransfer(DistillationMethod):
    papers = ("fbt", "ofa")  # its logit loss is OFA's
    config_class = FBTConfig

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.assistant = AssistantModel.from_views(
            teacher,
            student,
            bridge_type=config.bridge_type,
            stage_split=config.stage_split,
            bridge_upsample=BRIDGE_UPSAMPLING[config.bridge_upsample],
            bridge_downsample=config.bridge_downsample,
        )
        self.prefix_role = self.assistant.config.prefix_role
        self.suffix_role = self.assistant.config.suffix_role
        self.final_infos = {
            "teacher": teacher.stage_infos[3],
            "student": student.stage_infos[3],
            "assistant": self.assistant.final_stage_info,
        }
        if config.infonce_feature == "pre_logits":
            for view in (teacher, student):  # the assistant's suffix is one of them
                view.capture_pre_logits = True
            views = {"teacher": teacher, "student": student, "assistant": self.assistant.suffix}
            in_dims = {name: views[name].pre_logits_dim() for name in self.final_infos}
        else:
            in_dims = {
                name: smoothed_dim(info, config.pooling, config.infonce_use_cls)
                for name, info in self.final_infos.items()
            }
        # Only the models and paths that transfer get projectors and temperatures: parameters no
        # loss reaches would stall DDP.
        contrasted = {name for pair in config.transfer_pairs for name in pair}
        self.projectors = nn.ModuleDict(
            {name: FeatureProjector(in_dims[name], config.projector_dim) for name in self.final_infos if name in contrasted}
        )
        self.temperatures = nn.ModuleDict(
            {f"{x}_{y}": LearnableTemperature(config.infonce_temperature) for x, y in config.transfer_pairs}
        )
        if config.detach_assistant and "assistant" in self.projectors and ("teacher", "assistant") not in config.transfer_pairs:
            # F only teaches, detached: no loss reaches its projector, which stays as initialised.
            self.projectors["assistant"].requires_grad_(False)
        # Deep supervision: one branch per listed student stage, in stage order (empty when off).
        self.deep_supervision_stages = config.deep_supervision_stages
        self.deep_branches = nn.ModuleList(
            LogitBranch(student.stage_infos[stage - 1], num_labels_of(student), config.projector_dim)
            for stage in self.deep_supervision_stages
        )
        self._assistant_ramp: float | None = None
        self._assistant_gate: torch.Tensor | None = None

    def _logit_loss(self, learner_logits, teacher_logits, labels):
        config = self.config
        if config.fbt_logit_loss == "kd":
            return kd_loss(learner_logits, teacher_logits, config.kd_temperature)
        return ofa_loss(learner_logits, teacher_logits, labels, config.ofa_gamma, config.ofa_temperature)

    def _assistant_output(self, student, teacher):
        prefix_output = teacher if self.prefix_role == "teacher" else student
        return self.assistant(prefix_stage3=prefix_output.features[2])

    def _infonce_inputs(self, student, teacher, fused):
        """The per-model vectors InfoNCE contrasts, before the projectors."""
        config = self.config
        if config.infonce_feature == "pre_logits":
            return {"teacher": teacher.pre_logits, "student": student.pre_logits, "assistant": fused.pre_logits}
        features = {"teacher": teacher.features[3], "student": student.features[3], "assistant": fused.last_hidden_state}
        return {
            name: spatial_smooth(feature, self.final_infos[name], config.pooling, config.infonce_use_cls)
            for name, feature in features.items()
        }

    def _assistant_scale(self, student, fused, labels):
        """The factor of the F -> S terms (warm-up ramp times CE gate), or None when both are off."""
        config = self.config
        scale = None
        if config.fbt_assistant_warmup_steps > 0:
            self._assistant_ramp = min(1.0, self.global_step / config.fbt_assistant_warmup_steps)
            scale = self._assistant_ramp
        if config.fbt_assistant_gate == "ce":
            with torch.no_grad():
                assistant_ce = F.cross_entropy(fused.logits.float(), labels)
                student_ce = F.cross_entropy(student.logits.float(), labels)
                self._assistant_gate = (assistant_ce < student_ce).float()
            scale = self._assistant_gate if scale is None else scale * self._assistant_gate
        return scale

    def forward(self, student, teacher, labels):
        config = self.config
        fused = self._assistant_output(student, teacher)
        logits = {"teacher": teacher.logits, "student": student.logits, "assistant": fused.logits}
        inputs = self._infonce_inputs(student, teacher, fused)
        embeddings = {name: projector(inputs[name]) for name, projector in self.projectors.items()}
        losses = {
            "ce": self.supervised_loss(student.logits, labels),
            "ce_assistant": self.supervised_loss(fused.logits, labels),
        }
        assistant_scale = self._assistant_scale(student, fused, labels)
        same_label_mask = labels if config.infonce_mask_same_label else None
        for source, learner in config.transfer_pairs:
            source_embedding, source_logits = embeddings[source], logits[source]
            if source == "assistant" and config.detach_assistant:
                # F teaches S as a teacher would: S's losses do not move F.
                source_embedding, source_logits = source_embedding.detach(), source_logits.detach()
            pair = f"{source}_{learner}"
            tau = self.temperatures[pair]()
            nce = info_nce(source_embedding, embeddings[learner], tau, config.gather_negatives, same_label_mask)
            nce_term = config.infonce_weight * nce
            logit_term = config.logit_weight * self._logit_loss(logits[learner], source_logits, labels)
            if source == "assistant" and assistant_scale is not None:
                nce_term, logit_term = assistant_scale * nce_term, assistant_scale * logit_term
            losses[f"infonce_{pair}"] = nce_term
            losses[f"{config.fbt_logit_loss}_{pair}"] = logit_term
        if config.bridge_alignment_weight:
            suffix_output = teacher if self.suffix_role == "teacher" else student
            losses["bridge_alignment"] = config.bridge_alignment_weight * self._bridge_alignment(
                fused.bridged, suffix_output.features[2]
            )
        for stage, branch in zip(self.deep_supervision_stages, self.deep_branches):
            branch_logits = branch(student.features[stage - 1])
            losses[f"deep_supervision_stage{stage}"] = config.fbt_deep_supervision_weight * self._logit_loss(
                branch_logits, teacher.logits, labels
            )
        return losses

    def _bridge_alignment(self, bridged: torch.Tensor, suffix_stage3: torch.Tensor) -> torch.Tensor:
        """Mean squared error between the bridge's output map and the suffix's own stage-3 map pooled to the
        bridged grid (detached), relative to that target's mean square."""
        bridge = self.assistant.bridge
        target = to_map(suffix_stage3.detach(), self.assistant.suffix.stage_infos[2]).float()
        target = F.adaptive_avg_pool2d(target, bridge.target.grid)
        return F.mse_loss(to_map(bridged, bridge.target).float(), target) / target.pow(2).mean().clamp_min(1e-12)

    def no_weight_decay_names(self):
        # Weight decay would pull the learnable temperatures towards tau = 1.
        return {name for name, _ in self.temperatures.named_parameters(prefix="temperatures")}

    def log_values(self):
        values = {f"tau_{pair}": module().item() for pair, module in self.temperatures.items()}
        if self._assistant_ramp is not None:
            values["ramp_assistant_student"] = self._assistant_ramp
        if self._assistant_gate is not None:
            values["gate_assistant_student"] = self._assistant_gate.item()
        return values

    def evaluation_logits(self, student, teacher):
        return {"assistant": self._assistant_output(student, teacher).logits}
