"""Hinton knowledge distillation on logits (Hinton, Vinyals, Dean 2015): the ``kd`` baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient scale independent of ``T`` (the soft-target gradients
    shrink as ``1 / T^2``), so the weight of this term next to cross-entropy need not be retuned
    when ``T`` changes. Computed in float32 whatever the input dtype: fp16/bf16 softmaxes at a
    high temperature are flat enough for the KL to drown in rounding error.

    The teacher is not detached here: the caller decides (the fusion model may or may not get
    gradients when it teaches the student).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2
