"""DistillationModel: the one module the Trainer trains, and the owner of the staged views.

Student + the method's trainable parts (assistant bridge, projectors, branches, learnable
temperatures). Keeping them in one ``nn.Module`` is what makes DDP synchronise all of them and
checkpoints hold all of them (docs/architecture.md). The teacher is not in here: it is frozen
and owned by the trainer; its staged view is built here, once, with the student's, and handed
to the method.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .version import __version__
from .backbones import StagedBackbone, StagedOutput, staged_view
from .backbones.base import resplit
from .backbones.registry import unwrap_timm
from .errors import UsageError
from .methods import AUTO_METHOD, BEST_METHOD_FOR_STUDENT, DistillationMethod, MethodConfig, method_class, method_config
from .methods.base import option_text

logger = logging.getLogger(__name__)

# Written beside the student in every checkpoint and output folder: the run describes itself.
DISTILLATION_CONFIG_NAME = "distillation_config.json"


def describe_view(view: StagedBackbone) -> dict:
    """What a resume must find again: the model's spec, architecture, family and input resolution."""
    model = view.model
    config = getattr(model, "config", None)
    architecture = type(model).__name__
    timm_architecture = getattr(config, "architecture", None) or getattr(unwrap_timm(model), "default_cfg", {}).get(
        "architecture"
    )
    if timm_architecture:
        architecture += f"({timm_architecture})"
    return {
        "name_or_path": getattr(config, "_name_or_path", "") or "",
        "architecture": architecture,
        "family": view.family,
        "image_size": list(view.image_size),
    }


class DistillationModel(nn.Module):
    """The student and the method's trainable parts in one module, the one the Trainer trains.

    Build it with :meth:`build` (both staged views, and the method on them); ``forward`` returns every
    loss term and their sum in training, the student's logits in evaluation. ``main_input_name`` is
    the student's, so the Trainer finds a batch's inputs (``include_for_metrics=["inputs"]``,
    ``include_num_input_tokens_seen``) as it does for the student alone.
    """

    main_input_name = "pixel_values"

    def __init__(self, student: PreTrainedModel, method: DistillationMethod):
        super().__init__()
        self.student = student
        self.method = method
        # The views hold the student's and teacher's own modules; not registered again.
        self.__dict__["student_view"] = method.student_view
        self.__dict__["teacher_view"] = method.teacher_view

    @classmethod
    def build(
        cls,
        student: PreTrainedModel,
        teacher: PreTrainedModel | None,
        method: str,
        config: MethodConfig | dict | None = None,
        student_image_size=None,
        teacher_image_size=None,
    ) -> "DistillationModel":
        """Build both staged views once and the method ``method`` (options ``config``) on them; ``auto`` is the best
        measured method for the student's family (``hf_cakd.methods.BEST_METHOD_FOR_STUDENT``)."""
        student_view = staged_view(student, student_image_size)
        if method == AUTO_METHOD:
            method = BEST_METHOD_FOR_STUDENT[student_view.family]
            logger.info("--method auto: %s, the best measured method for %s students (docs/method.md).", method, student_view.family)
        config = method_config(method, config)
        student_view = resplit(student_view, config.stage_split)
        teacher_view = None if teacher is None else resplit(staged_view(teacher, teacher_image_size), config.stage_split)
        built = method_class(method)(student_view, teacher_view, config)
        if built.options_set_by_pair:
            logger.info(
                "--method %s, %s student and %s teacher: %s ('auto': follows the pair; docs/method.md).",
                method,
                student_view.family,
                teacher_view.family,
                ", ".join(f"--{name} {option_text(value)}" for name, value in built.options_set_by_pair.items()),
            )
        return cls(student, built)

    @property
    def config(self):
        return self.student.config

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, every_n_layers=1, offload=False):
        """``--activation_checkpointing`` (alias ``--gradient_checkpointing``): the student's layers recompute their activations.

        The student is trained through its staged view, which calls its layers directly; transformers
        layers checkpoint themselves there, timm models checkpoint only inside their own
        ``forward_features``, which the view does not call, so those are refused.
        """
        self.student.activation_checkpointing_enable(
            activation_checkpointing_kwargs=activation_checkpointing_kwargs, every_n_layers=every_n_layers, offload=offload
        )
        if not any(getattr(module, "gradient_checkpointing", False) is True for module in self.student.modules()):
            self.student.activation_checkpointing_disable()
            raise UsageError(
                f"--activation_checkpointing does not reach the stages of {type(self.student).__name__} as hf_cakd "
                "trains them (only transformers models' own layers checkpoint themselves); drop the flag."
            )

    @property
    def is_activation_checkpointing(self) -> bool:
        return self.student.is_activation_checkpointing

    def description(self) -> dict:
        """The run in JSON terms: method, its options, the student's and teacher's specs."""
        return {
            "hf_cakd_version": __version__,
            "method": self.method.name,
            "method_config": self.method.config.to_dict(),
            "student": describe_view(self.student_view),
            "teacher": None if self.teacher_view is None else describe_view(self.teacher_view),
        }

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        teacher_outputs: StagedOutput | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training: every named loss term and their sum. Evaluation: the student alone."""
        if not self.training:
            logits = self.student(pixel_values).logits
            if labels is None:  # no "loss": None would be counted among the predictions
                return {"logits": logits}
            return {"loss": F.cross_entropy(logits.float(), labels), "logits": logits}
        if labels is None:
            raise ValueError("Distillation needs labels in the training batch (a 'labels' column).")
        student_outputs = self.student_view(pixel_values)
        losses = self.method(student_outputs, teacher_outputs, labels)
        return {"loss": sum(losses.values()), "logits": student_outputs.logits, "losses": losses}
