"""``fbt``: Fuse Before Transfer (Li et al., ICCV 2025; docs/method.md).

An assistant F, fused from the CNN's early stages and the attention/MLP model's last stage,
sits between teacher T and student S. Knowledge flows along three pairs, (T, S), (T, F) and
(F, S), each with a spatial-agnostic InfoNCE on the smoothed final-stage features and a logit
loss (OFA's by default), plus cross-entropy for S and F::

    L = CE(S) + CE(F) + sum_pairs fbt_infonce_weight * InfoNCE(X, Y) + fbt_logit_weight * L_logit(X -> Y)
        [+ OFA's branches on student stages: fbt_deep_supervision_weight * L_logit(branch -> T)]

``--fbt_feature_loss rsd`` replaces each path's InfoNCE with RSD's redundancy suppression of the
learner's projected feature against the source's (``rsd_weight * RSD(proj(Y), X)``, hf_cakd.methods.rsd).

F reuses the stage-3 activation its CNN prefix computed in the teacher's or student's own
forward pass, so F costs one bridge plus one stage. :class:`FBTConfig` holds the paper's options
and the five whose default follows the pair (:meth:`FBTConfig.for_pair`: the bridge for the pair, and
the paper's settings or fbt's for a CNN student of an attention or MLP teacher); :class:`FBTExperimentalOptions` those
beyond the paper, off by default and under evaluation (docs/method.md says what each does and what
the measurements say so far).
"""

from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

from ..assistant import AssistantModel, bridge_for_pair
from ..assistant.bridge import BRIDGE_TYPES
from ..backbones import StagedBackbone
from ..errors import UsageError
from ..losses import FeatureProjector, LearnableTemperature, LogitBranch, info_nce, smoothed_dim, spatial_smooth
from ..losses.infonce import TEMPERATURE_BOUNDS
from .base import (
    BY_PAIR,
    STAGE_SPLIT_HELP,
    ByPair,
    DistillationMethod,
    MethodConfig,
    Stage,
    StageSplit,
    num_labels_of,
    option,
    register_method,
)
from .ofa import LogitLossOptions
from .rsd import RSDLossOptions


# (who teaches, who learns) for the three knowledge paths.
PAIRS = (("teacher", "student"), ("teacher", "assistant"), ("assistant", "student"))
PATH_NAMES = tuple(f"{source}_{learner}" for source, learner in PAIRS)
TransferPath = Literal[PATH_NAMES]


class ClassTokenError(UsageError, ValueError):
    """``fbt_infonce_use_cls`` asked of a pair where a model that InfoNCE contrasts has no class token (exit code 2)."""


class FeatureLossOptionError(UsageError, ValueError):
    """An option of the feature loss this run does not use (InfoNCE's with RSD's loss, or the reverse; exit code 2)."""


# The options that only one feature loss reads (the features they align, fbt_infonce_feature/pooling/use_cls, are both's).
FEATURE_LOSS_OPTIONS = {
    "infonce": ("fbt_infonce_weight", "fbt_infonce_temperature", "fbt_infonce_mask_same_label", "fbt_gather_negatives"),
    "rsd": ("rsd_weight", "rsd_kappa", "rsd_projector_expansion"),
}


@dataclass
class FBTExperimentalOptions(MethodConfig):
    """FBT's options beyond the paper: off by default, under evaluation (docs/method.md, "Experimental options")."""

    fbt_assistant_warmup_steps: int = option(
        0,
        "Ramp the assistant -> student terms in over this many optimizer steps, weight min(1, step / N); 0: full "
        "weight from the start.",
        experimental=True,
    )
    fbt_infonce_feature: Literal["stage4", "pre_logits"] = option(
        "stage4",
        "What InfoNCE contrasts: 'stage4' (the smoothed final-stage features) or 'pre_logits' (the pooled vector each "
        "classifier reads; --fbt_infonce_pooling and --fbt_infonce_use_cls do not apply).",
        experimental=True,
    )
    fbt_infonce_mask_same_label: bool = option(
        False, "Leave images of the same class out of the InfoNCE negatives.", experimental=True
    )

    def __post_init__(self):
        super().__post_init__()
        if self.fbt_assistant_warmup_steps < 0:
            raise ValueError(f"fbt_assistant_warmup_steps must be >= 0, got {self.fbt_assistant_warmup_steps}")


@dataclass
class FBTConfig(FBTExperimentalOptions, RSDLossOptions, LogitLossOptions):
    """FBT's options: the paper's recipe, its logit losses' (OFA's, Hinton's), RSD's feature loss and the experimental ones."""

    stage_split: StageSplit = option("ofa", STAGE_SPLIT_HELP)
    fbt_logit_loss: Literal["ofa", "kd"] = option(
        "ofa", "FBT's logit loss: 'ofa' (its options: --ofa_gamma, --ofa_temperature) or 'kd' (--kd_temperature)."
    )
    fbt_logit_weight: float = option(1.0, "Weight of each of FBT's three logit terms.")
    fbt_feature_loss: Literal["infonce", "rsd"] | ByPair = option(
        BY_PAIR,
        "FBT's feature loss on each path: 'infonce' (the paper's: --fbt_infonce_*) or 'rsd' (RSD's redundancy suppression "
        "of the learner's projected features against the source's: --rsd_weight, --rsd_kappa, --rsd_projector_expansion).",
    )
    fbt_infonce_weight: float = option(0.3, "Weight of each of FBT's three InfoNCE terms.")
    fbt_infonce_pooling: str = option("avg", "Spatial smoothing before InfoNCE: 'avg' (global average) or k for k x k pooling.")
    fbt_infonce_use_cls: bool = option(False, "Contrast the class token instead of the pooled features.")
    fbt_projector_dim: int = option(
        256, "Width of FBT's projection heads: the InfoNCE projectors (and the deep-supervision branches)."
    )
    fbt_infonce_temperature: float = option(0.07, "Initial value of each path's learnable InfoNCE temperature.")
    fbt_gather_negatives: bool = option(True, "Gather InfoNCE negatives across processes (gradient-preserving).")
    fbt_bridge_type: Literal[BRIDGE_TYPES] | ByPair = option(
        BY_PAIR, "The assistant's bridge: 'attention' (with a transformer block) or 'linear' (a projection)."
    )
    fbt_bridge_upsample: bool | ByPair = option(
        BY_PAIR,
        "Whether the bridge upsamples a CNN stage-3 map smaller than the grid of F's last stage to that grid; false "
        "keeps the smaller grid, for a last stage that runs on any grid (ViT, DeiT).",
    )
    fbt_transfer_paths: tuple[TransferPath, ...] | ByPair = option(
        BY_PAIR,
        f"Knowledge paths that transfer, comma-separated from {', '.join(PATH_NAMES)} (all three: the paper).",
    )
    fbt_deep_supervision: tuple[Stage, ...] | ByPair = option(
        BY_PAIR,
        "Student stages, comma-separated (e.g. '1,2,3'), that get an OFA-style logit branch trained against the "
        "teacher's logits with FBT's logit loss (beyond the paper); '' for none.",
    )
    fbt_deep_supervision_weight: float = option(1.0, "Weight of each deep-supervision branch's term.")
    fbt_bridge_downsample: int | ByPair = option(
        BY_PAIR,
        "Divide the grid the bridge hands F's last stage by this factor in each direction (2: 14x14 becomes 7x7, a "
        "quarter of that stage's tokens; beyond the paper). Needs a last stage that runs on any grid (ViT, DeiT).",
    )

    def __post_init__(self):
        super().__post_init__()
        pooling = str(self.fbt_infonce_pooling)
        if pooling != "avg" and not (pooling.isdigit() and int(pooling) > 0):
            raise ValueError(f"fbt_infonce_pooling must be 'avg' or a positive integer k (k x k pooling), got {pooling!r}")
        self.fbt_infonce_pooling = pooling
        if self.fbt_infonce_feature == "pre_logits" and (self.fbt_infonce_use_cls or self.fbt_infonce_pooling != "avg"):
            raise ValueError("fbt_infonce_feature 'pre_logits' is already pooled: leave fbt_infonce_pooling and fbt_infonce_use_cls unset.")
        if not self.fbt_transfer_paths:
            raise ValueError(f"fbt_transfer_paths names at least one of {', '.join(PATH_NAMES)}.")
        low, high = TEMPERATURE_BOUNDS
        if not low <= self.fbt_infonce_temperature <= high:
            raise ValueError(
                f"fbt_infonce_temperature starts each learnable temperature, which stays within [{low}, {high}]; got "
                f"{self.fbt_infonce_temperature}"
            )
        if self.fbt_bridge_downsample != BY_PAIR and self.fbt_bridge_downsample < 1:
            raise ValueError(f"fbt_bridge_downsample must be a positive integer, got {self.fbt_bridge_downsample}")

    def for_pair(self, teacher: StagedBackbone, student: StagedBackbone) -> "FBTConfig":
        """This config with its 'auto' options set for the pair (docs/method.md, "'auto': follows the pair"): the
        bridge as the assistant picks it for the pair; where F ends in the teacher's last stage (a CNN student, a
        teacher of another family) F -> S does not transfer, the student's stages 1-3 get OFA's logit branches, and
        the bridge halves the teacher's grid where its last stage runs on any grid; elsewhere the paper's three
        paths, no branches, the full grid. An attention student of another family's teacher learns each path with
        RSD's loss, every other student with the paper's InfoNCE (docs/method.md)."""
        cnn_student = student.family == "cnn" and teacher.family != "cnn"
        by_pair = {f"fbt_{name}": value for name, value in bridge_for_pair(teacher, student).items()} | {
            "fbt_transfer_paths": PATH_NAMES[:2] if cnn_student else PATH_NAMES,
            "fbt_deep_supervision": (1, 2, 3) if cnn_student else (),
            "fbt_bridge_downsample": 2 if cnn_student and teacher.runs_on_any_grid else 1,
            "fbt_feature_loss": "rsd" if student.family == "attention" != teacher.family else "infonce",
        }
        return replace(self, **{name: value for name, value in by_pair.items() if getattr(self, name) == BY_PAIR})

    @property
    def transfer_pairs(self) -> tuple[tuple[str, str], ...]:
        """The (source, learner) pairs that transfer, in PAIRS order."""
        if self.fbt_transfer_paths == BY_PAIR:
            raise ValueError(f"fbt_transfer_paths is '{BY_PAIR}' until the pair sets it: call for_pair(teacher, student) first.")
        return tuple(pair for pair, name in zip(PAIRS, PATH_NAMES) if name in self.fbt_transfer_paths)

    @property
    def pooling(self) -> str | int:
        return "avg" if self.fbt_infonce_pooling == "avg" else int(self.fbt_infonce_pooling)


@register_method("fbt", title="FBT (Fuse Before Transfer)")
class FuseBeforeTransfer(DistillationMethod):
    papers = ("fbt", "ofa")  # its logit loss is OFA's
    config_class = FBTConfig
    evaluated_classifiers = ("assistant",)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        config = self.config  # its 'auto' options set for the pair
        self.assistant = AssistantModel.from_views(
            teacher,
            student,
            bridge_type=config.fbt_bridge_type,
            stage_split=config.stage_split,
            bridge_upsample=config.fbt_bridge_upsample,
            bridge_downsample=config.fbt_bridge_downsample,
        )
        self.prefix_role = self.assistant.config.prefix_role
        self.final_infos = {
            "teacher": teacher.stage_infos[3],
            "student": student.stage_infos[3],
            "assistant": self.assistant.final_stage_info,
        }
        if config.fbt_infonce_use_cls:  # forward smooths all three final features, contrasted or not
            without = [name for name, info in self.final_infos.items() if info.num_prefix_tokens < 1]
            if without:
                raise ClassTokenError(
                    f"--fbt_infonce_use_cls contrasts class tokens, but this pair's {' and '.join(without)} "
                    f"({teacher.family} teacher, {student.family} student) end in a CNN map or in tokens without "
                    "a class token: leave --fbt_infonce_use_cls off for this pair."
                )
        self._refuse_options_of_the_other_feature_loss(config)
        if config.fbt_infonce_feature == "pre_logits":
            for view in (teacher, student):  # F's suffix is one of them
                view.capture_pre_logits = True
            views = {"teacher": teacher, "student": student, "assistant": self.assistant.suffix}
            in_dims = {name: views[name].pre_logits_dim() for name in self.final_infos}
        else:
            in_dims = {
                name: smoothed_dim(info, config.pooling, config.fbt_infonce_use_cls)
                for name, info in self.final_infos.items()
            }
        # Only the models and paths that transfer get projectors and temperatures: parameters no
        # loss reaches would stall DDP.
        contrasted = {name for pair in config.transfer_pairs for name in pair} if self.uses_infonce else set()
        self.projectors = nn.ModuleDict(
            {name: FeatureProjector(in_dims[name], config.fbt_projector_dim) for name in self.final_infos if name in contrasted}
        )
        self.temperatures = nn.ModuleDict(
            {f"{x}_{y}": LearnableTemperature(config.fbt_infonce_temperature) for x, y in config.transfer_pairs if self.uses_infonce}
        )
        if "assistant" in self.projectors and ("teacher", "assistant") not in config.transfer_pairs:
            # F only teaches, detached: no loss reaches its projector, which stays as initialised.
            self.projectors["assistant"].requires_grad_(False)
        # RSD: one projector per path, from the learner's feature to the source's width.
        self.rsd_projectors = nn.ModuleDict(
            {f"{x}_{y}": config.rsd_projector(in_dims[y], in_dims[x]) for x, y in config.transfer_pairs if not self.uses_infonce}
        )
        # Deep supervision: one branch per listed student stage, in stage order (empty when off).
        self.deep_branches = nn.ModuleList(
            LogitBranch(student.stage_infos[stage - 1], num_labels_of(student), config.fbt_projector_dim)
            for stage in config.fbt_deep_supervision
        )
        self._assistant_ramp: float | None = None

    def _refuse_options_of_the_other_feature_loss(self, config: FBTConfig) -> None:
        """A silently ignored option would be a wrong run: with ``auto`` the pair may have picked the other loss."""
        used = config.fbt_feature_loss
        other = next(loss for loss in FEATURE_LOSS_OPTIONS if loss != used)
        changed = config.changed_options()
        given = [name for name in FEATURE_LOSS_OPTIONS[other] if name in changed]
        if given:
            pair = f"auto, for this {self.student_view.family} student and {self.teacher_view.family} teacher"
            how = pair if "fbt_feature_loss" in self.options_set_by_pair else "given"
            raise FeatureLossOptionError(
                f"--{given[0]} applies to fbt_feature_loss {other}, but this run's is {used} ({how}): pass "
                f"--fbt_feature_loss {other} to use it, or drop --{' --'.join(given)}."
            )

    @property
    def uses_infonce(self) -> bool:
        return self.config.fbt_feature_loss == "infonce"

    @classmethod
    def cited_papers(cls, changed_options):
        return cls.papers + (("rsd",) if changed_options.get("fbt_feature_loss") == "rsd" else ())

    def _logit_loss(self, learner_logits, teacher_logits, labels):
        return self.config.logit_loss(self.config.fbt_logit_loss, learner_logits, teacher_logits, labels)

    def _assistant_output(self, student, teacher):
        prefix_output = teacher if self.prefix_role == "teacher" else student
        return self.assistant(prefix_stage3=prefix_output.features[2])

    def _infonce_inputs(self, student, teacher, fused):
        """The per-model vectors InfoNCE contrasts, before the projectors."""
        config = self.config
        if config.fbt_infonce_feature == "pre_logits":
            return {"teacher": teacher.pre_logits, "student": student.pre_logits, "assistant": fused.pre_logits}
        features = {"teacher": teacher.features[3], "student": student.features[3], "assistant": fused.last_hidden_state}
        return {
            name: spatial_smooth(feature, self.final_infos[name], config.pooling, config.fbt_infonce_use_cls)
            for name, feature in features.items()
        }

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
        if config.fbt_assistant_warmup_steps > 0:  # the F -> S terms ramp in
            self._assistant_ramp = min(1.0, self.global_step / config.fbt_assistant_warmup_steps)
        same_label_mask = labels if config.fbt_infonce_mask_same_label else None
        for source, learner in config.transfer_pairs:
            pair = f"{source}_{learner}"
            detach_source = source == "assistant"  # F teaches S as a teacher would: S's losses do not move F
            source_logits, source_input = (logits[source], inputs[source])
            if detach_source:
                source_logits, source_input = source_logits.detach(), source_input.detach()
            if self.uses_infonce:
                source_embedding = embeddings[source].detach() if detach_source else embeddings[source]
                nce = info_nce(source_embedding, embeddings[learner], self.temperatures[pair](), config.fbt_gather_negatives, same_label_mask)
                feature_name, feature_term = f"infonce_{pair}", config.fbt_infonce_weight * nce
            else:
                feature_name = f"rsd_{pair}"
                feature_term = config.rsd_term(self.rsd_projectors[pair], inputs[learner], source_input)
            logit_term = config.fbt_logit_weight * self._logit_loss(logits[learner], source_logits, labels)
            if source == "assistant" and self._assistant_ramp is not None:
                feature_term, logit_term = self._assistant_ramp * feature_term, self._assistant_ramp * logit_term
            losses[feature_name] = feature_term
            losses[f"{config.fbt_logit_loss}_{pair}"] = logit_term
        for stage, branch in zip(config.fbt_deep_supervision, self.deep_branches):
            branch_logits = branch(student.features[stage - 1])
            losses[f"deep_supervision_stage{stage}"] = config.fbt_deep_supervision_weight * self._logit_loss(
                branch_logits, teacher.logits, labels
            )
        return losses

    def no_weight_decay_names(self):
        # Weight decay would pull the learnable temperatures towards tau = 1.
        return {name for name, _ in self.temperatures.named_parameters(prefix="temperatures")}

    def log_values(self):
        values = {f"tau_{pair}": module().item() for pair, module in self.temperatures.items()}
        if self._assistant_ramp is not None:
            values["ramp_assistant_student"] = self._assistant_ramp
        return values

    def evaluation_logits(self, student, teacher):
        return {"assistant": self._assistant_output(student, teacher).logits}
