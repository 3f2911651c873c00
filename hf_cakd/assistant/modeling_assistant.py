"""The FBT assistant (fusion) model F (docs/method.md).

Heterogeneous pair (a CNN ``C`` and an attention/MLP model ``A``, either may teach)::

    F = head_A . stage4_A . Bridge . stage3_C . stage2_C . stage1_C . stem_C

Any other pair: the student's stem and stages 1-3, the bridge, the teacher's stage 4 and head.

The stages are the teacher's and the student's own modules, held by reference: the bridge is
F's only registered parameters (with ``own_teacher_suffix``, also F's own trained copy of the
teacher's model, of which F runs stage 4 and the head), so ``save_pretrained`` writes just those and
``AutoModel.from_pretrained(path, teacher=..., student=...)`` rebuilds F around the same two
models. :meth:`AssistantModel.save_standalone` writes an F that owns copies of every module.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from typing import Optional

import torch
from torch import nn
from transformers import AutoModelForImageClassification, PreTrainedModel
from transformers.modeling_outputs import ModelOutput
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..backbones import StagedBackbone, StageInfo, staged_view
from ..backbones.base import resplit
from ..errors import UsageError
from .bridge import FusionBridge
from .configuration_assistant import AssistantConfig, other_role


class BridgeGridError(UsageError, ValueError):
    """``bridge_upsample=False`` or ``bridge_downsample`` > 1 asked of a suffix whose stages run only on their own
    grid (a flag the pair cannot take: exit code 2 from the CLI)."""


class OwnTeacherSuffixError(UsageError, ValueError):
    """``own_teacher_suffix`` asked of a pair whose suffix is the student's (exit code 2 from the CLI)."""


@dataclass
class AssistantOutput(ModelOutput):
    """``logits`` of F; ``last_hidden_state`` is F's final-stage feature (suffix stage 4); ``pre_logits``
    what F's classifier reads, when the suffix view captures it (``capture_pre_logits``); ``bridged`` the
    bridge's output, the input of F's last stage (laid out as ``AssistantModel.bridge.target`` says)."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    pre_logits: Optional[torch.Tensor] = None
    bridged: Optional[torch.Tensor] = None


def fusion_roles(teacher_family: str, student_family: str) -> str:
    """The role (``"teacher"``/``"student"``) whose stem and stages 1-3 start F."""
    if (teacher_family == "cnn") != (student_family == "cnn"):
        return "teacher" if teacher_family == "cnn" else "student"
    return "student"


def _model_from_config_dict(config_dict: dict) -> PreTrainedModel:
    config_dict = dict(config_dict)
    config = CONFIG_MAPPING[config_dict.pop("model_type")].from_dict(config_dict)
    return AutoModelForImageClassification.from_config(config)


def _classifier_labels(model: nn.Module) -> dict:
    """The classifier's labels: its transformers config's, or a bare timm model's class count."""
    config = getattr(model, "config", None)
    if config is None:
        return {"num_labels": model.num_classes}
    return {"id2label": dict(config.id2label), "label2id": dict(config.label2id or {})}


def _view(model: nn.Module, image_size: list[int] | None, stage_split: str) -> StagedBackbone:
    """A given staged view as it is (built once by its owner), or a model's view at ``image_size``."""
    if isinstance(model, StagedBackbone):
        return model
    return resplit(staged_view(model, image_size), stage_split)


def _stage_dict(info: StageInfo) -> dict:
    return {**asdict(info), "grid": list(info.grid)}


class AssistantPreTrainedModel(PreTrainedModel):
    config_class = AssistantConfig
    base_model_prefix = "assistant"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        if isinstance(module, FusionBridge):
            module.reset_embeddings()
        else:
            super()._init_weights(module)


class AssistantModel(AssistantPreTrainedModel):
    """F around a given teacher and student (shared modules), or standalone (own copies).

    Build one with :meth:`from_teacher_student`; rebuild a saved one with
    ``AssistantModel.from_pretrained(path, teacher=teacher, student=student)`` or, for a
    standalone save, ``AssistantModel.from_pretrained(path)``.
    """

    def __init__(self, config: AssistantConfig, teacher: nn.Module | None = None, student: nn.Module | None = None):
        super().__init__(config)
        if (teacher is None) != (student is None):
            raise ValueError("Pass both the teacher and the student the assistant was built from, or neither.")
        if teacher is None:
            if not (config.prefix_model_config and config.suffix_model_config):
                raise ValueError(
                    "This assistant shares its stages with a teacher and a student: load it with "
                    "AssistantModel.from_pretrained(path, teacher=teacher, student=student)."
                )
            # Standalone: registered submodules, so they are saved, moved and trained with F.
            self.prefix_model = _model_from_config_dict(config.prefix_model_config)
            self.suffix_model = _model_from_config_dict(config.suffix_model_config)
            prefix_model, suffix_model = self.prefix_model, self.suffix_model
        else:
            roles = {"teacher": teacher, "student": student}
            prefix_model, suffix_model = roles[config.prefix_role], roles[config.suffix_role]
        # Held by reference, not registered: their parameters belong to the teacher/student.
        self.__dict__["prefix"] = _view(prefix_model, config.prefix_image_size, config.stage_split)
        self.__dict__["suffix"] = _view(suffix_model, config.suffix_image_size, config.stage_split)
        if config.own_teacher_suffix and teacher is not None:
            self.__dict__["suffix"] = self._trainable_copy(self.suffix)
            self.suffix_model = self.suffix.model  # registered: saved, moved and trained with F
        source, target = self.prefix.stage_infos[2], self.suffix.stage_infos[2]
        expected = (config.source_stage, config.target_stage)
        if expected != (None, None) and expected != (_stage_dict(source), _stage_dict(target)):
            raise ValueError(
                f"This assistant's bridge maps {config.source_stage} -> {config.target_stage}, but the given "
                f"models give {_stage_dict(source)} -> {_stage_dict(target)}: pass the same teacher and student "
                "(architectures and image sizes) it was built with."
            )
        config.source_stage, config.target_stage = _stage_dict(source), _stage_dict(target)
        self.bridge = FusionBridge(
            source,
            target,
            config.bridge_type,
            config.bridge_num_heads,
            config.bridge_mlp_ratio,
            config.bridge_upsample,
            config.bridge_downsample,
        )
        if self.bridge.target.grid != target.grid and not self.suffix.runs_on_any_grid:
            asked = "bridge_upsample=False" if config.bridge_downsample == 1 else f"bridge_downsample={config.bridge_downsample}"
            raise BridgeGridError(
                f"{asked} hands stage 4 of the {type(self.suffix.model).__name__} a {self.bridge.target.grid} grid, "
                f"but its stages run only on {target.grid}: leave bridge_downsample at 1 and set bridge_upsample to "
                "true or auto for this pair (another grid needs a suffix such as ViT or DeiT)."
            )
        self.post_init()

    @staticmethod
    def _trainable_copy(view: StagedBackbone) -> StagedBackbone:
        """A copy of ``view`` and its model whose stage 4 and head train; the rest, which F never runs, stays frozen."""
        copied = copy.deepcopy(view)  # one memo: the copied view's stages are the copied model's modules
        copied.model.requires_grad_(False)
        copied.stages[3].requires_grad_(True)
        copied.head.requires_grad_(True)
        return copied

    @property
    def final_stage_info(self) -> StageInfo:
        """What F's last stage outputs: the suffix's stage 4, on the bridge's grid when that is not the suffix's
        own (only views that run on any grid take one, and those are isotropic: stage 4 keeps its input grid)."""
        info = self.suffix.stage_infos[3]
        if self.bridge.target.grid == self.suffix.stage_infos[2].grid:
            return info
        return replace(info, grid=self.bridge.target.grid)

    @classmethod
    def from_teacher_student(
        cls,
        teacher: nn.Module,
        student: nn.Module,
        teacher_image_size: int | tuple[int, int] | None = None,
        student_image_size: int | tuple[int, int] | None = None,
        bridge_type: str = "auto",
        **config_kwargs,
    ) -> "AssistantModel":
        """Build F around two classifiers (their staged views at the given resolutions)."""
        return cls.from_views(
            staged_view(teacher, teacher_image_size), staged_view(student, student_image_size), bridge_type, **config_kwargs
        )

    @classmethod
    def from_views(
        cls,
        teacher: StagedBackbone,
        student: StagedBackbone,
        bridge_type: str = "auto",
        bridge_upsample: bool | str = "auto",
        **config_kwargs,
    ) -> "AssistantModel":
        """Choose the prefix by module function (docs/method.md) and build F on the given staged views.

        ``bridge_type="auto"`` uses the attention bridge when prefix and suffix come from
        different families and the linear one when they share a family. ``bridge_upsample``: True
        upsamples a prefix grid smaller than the suffix's to the suffix's, False keeps it (only a
        suffix that runs on any grid takes it: ViT, DeiT), ``"auto"`` (FBT's default) keeps it
        where the suffix is the student's and runs on any grid (it learns on the grid it is given)
        and upsamples for a teacher's suffix (trained on its own grid, and frozen) and for Mixer
        and Swin.
        """
        views = {"teacher": teacher, "student": student}
        prefix_role = fusion_roles(teacher.family, student.family)
        suffix_role = other_role(prefix_role)
        prefix, suffix = views[prefix_role], views[suffix_role]
        if bridge_type == "auto":
            bridge_type = "linear" if prefix.family == suffix.family else "attention"
        if bridge_upsample == "auto":
            bridge_upsample = not (suffix_role == "student" and suffix.runs_on_any_grid)
        if config_kwargs.get("own_teacher_suffix") and suffix_role != "teacher":
            raise OwnTeacherSuffixError(
                f"own_teacher_suffix trains a copy of the teacher's last stage inside F, but with {teacher.family} "
                f"teachers and {student.family} students F's last stage is the student's, which trains anyway: "
                "leave it off for this pair."
            )
        config = AssistantConfig(
            prefix_role=prefix_role,
            prefix_image_size=list(prefix.image_size),
            suffix_image_size=list(suffix.image_size),
            bridge_type=bridge_type,
            bridge_upsample=bridge_upsample,
            **_classifier_labels(suffix.model),
            **config_kwargs,
        )
        return cls(config, teacher=teacher, student=student)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        prefix_stage3: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> AssistantOutput:
        """Run F on the prefix model's input, or on its already computed stage-3 activation.

        Passing ``prefix_stage3`` (from the forward pass the prefix model made anyway) means the
        shared stem and stages 1-3 are not run a second time.
        """
        if prefix_stage3 is None:
            if pixel_values is None:
                raise ValueError("Pass pixel_values or prefix_stage3.")
            hidden = self.prefix.stem(pixel_values)
            for stage in self.prefix.stages[:3]:
                hidden = stage(hidden)
            prefix_stage3 = hidden
        bridged = self.bridge(prefix_stage3)
        output = self.suffix.forward_from(3, bridged)
        loss = None if labels is None else nn.functional.cross_entropy(output.logits.float(), labels)
        return AssistantOutput(
            loss=loss,
            logits=output.logits,
            last_hidden_state=output.features[-1],
            pre_logits=output.pre_logits,
            bridged=bridged,
        )

    def save_standalone(self, save_directory: str, **kwargs) -> None:
        """Save a fused classifier that owns copies of every module it uses.

        It loads with ``AutoModel.from_pretrained(save_directory)`` (hf_cakd imported), no
        teacher or student needed.
        """
        for role, model in (("prefix", self.prefix.model), ("suffix", self.suffix.model)):
            if getattr(model, "config", None) is None:
                raise ValueError(
                    f"save_standalone rebuilds both models from their transformers configs, but the {role} model "
                    f"is a bare {type(model).__name__} without one. Wrap timm models in transformers' "
                    "TimmWrapperForImageClassification (hf_cakd.model_specs.load_classifier does) or use save_pretrained."
                )
        config = copy.deepcopy(self.config)
        config.prefix_model_config = self.prefix.model.config.to_dict()
        config.suffix_model_config = self.suffix.model.config.to_dict()
        standalone = AssistantModel(config)
        standalone.prefix_model.load_state_dict(self.prefix.model.state_dict())
        standalone.suffix_model.load_state_dict(self.suffix.model.state_dict())
        standalone.bridge.load_state_dict(self.bridge.state_dict())
        standalone.save_pretrained(save_directory, **kwargs)
