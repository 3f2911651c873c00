"""An exponential moving average of the student (``--model_ema_decay``): timm's ``ModelEmaV3`` as a TrainerCallback.

The average is of the student alone (the method's own parts are training aids, never used after
training), updated after every optimizer step with timm's step-aware decay (the first update copies
the student, as timm's ``train.py`` does). ``DistillationTrainer`` keeps it in every checkpoint as
``ema/``, a plain transformers model folder, and restores it on resume; the pipeline evaluates it beside the
student (``student_ema`` in ``results.json`` and the card) and, with ``--save_ema_as_student``, saves
it as the student.

Under DDP every process holds the same student (DDP keeps the replicas equal), so every process's
average of its unwrapped student is the same without any communication; only the main process
writes it.
"""

from __future__ import annotations

import contextlib

import torch
from timm.utils import ModelEmaV3
from transformers import PreTrainedModel, TrainerCallback

EMA_DIR = "ema"
"""The EMA student's folder in a checkpoint and in the output directory."""
EMA_ROW = "student_ema"
"""Its row in ``results.json``'s metrics and in the card."""


class StudentEMA(TrainerCallback):
    """The moving average of ``student``; ``module`` is the averaged copy (a model of the student's class)."""

    def __init__(self, student: PreTrainedModel, decay: float):
        self.student = student
        self.average = ModelEmaV3(student, decay=decay)

    @property
    def module(self) -> PreTrainedModel:
        return self.average.module

    def on_step_end(self, args, state, control, **kwargs):
        self.average.update(self.student, step=state.global_step)

    def evaluation_logits(self, batch: dict) -> dict[str, torch.Tensor]:
        """The average's logits on an evaluation batch, named as its row (for ``DistillationTrainer.evaluate_classifiers``)."""
        with torch.no_grad():
            return {EMA_ROW: self.module(pixel_values=batch["pixel_values"]).logits.float()}

    @contextlib.contextmanager
    def as_student(self):
        """The student holds the average's weights inside the block (to save them as the student), its own after."""
        own = {name: tensor.detach().clone() for name, tensor in self.student.state_dict().items()}
        with torch.no_grad():
            self.student.load_state_dict(self.module.state_dict())
        try:
            yield
        finally:
            with torch.no_grad():
                self.student.load_state_dict(own)
