"""DistillationModel: the one module the Trainer trains.

Student + the method's trainable parts (assistant bridge, projectors, branches, learnable
temperatures). Keeping them in one ``nn.Module`` is what makes DDP synchronise all of them and
checkpoints hold all of them (design.md). The teacher is not in here: it is frozen and owned by
the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .backbones import StagedOutput, staged_view
from .methods import DistillationMethod, method_class


class DistillationModel(nn.Module):
    def __init__(self, student: PreTrainedModel, method: DistillationMethod):
        super().__init__()
        self.student = student
        self.method = method
        # The student's own modules seen as stages; not registered again (owned by self.student).
        self.__dict__["student_view"] = method.student_view

    @classmethod
    def build(
        cls,
        student: PreTrainedModel,
        teacher: PreTrainedModel | None,
        args,
        student_image_size=None,
        teacher_image_size=None,
    ) -> "DistillationModel":
        method = method_class(args.method)
        student_view = staged_view(student, student_image_size)
        teacher_view = None if teacher is None else staged_view(teacher, teacher_image_size)
        return cls(student, method(student_view, teacher_view, args))

    @property
    def config(self):
        return self.student.config

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
