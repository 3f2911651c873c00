"""The OFA logit loss (Hao et al., NeurIPS 2023, "One-for-All"): FBT's default logit loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ofa_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``-sum_c [(p_t,c + y_c)^gamma - y_c] * log p_s,c``, averaged over the batch.

    With ``gamma = 1`` this is cross-entropy to the teacher's soft targets. With ``gamma > 1``
    the target class gains weight, ``(p_t,y + 1)^gamma - 1 >= gamma * p_t,y``, while every other
    class loses it, ``p_t,c^gamma <= p_t,c``: the label counts for more than the teacher alone
    says, which is how OFA tempers a teacher whose dark knowledge comes from another
    architecture. ``gamma < 1`` would do the opposite and is rejected. The weights no longer sum
    to 1 when ``gamma > 1``, so the loss scale grows with ``gamma``.

    Args:
        student_logits, teacher_logits: ``(B, num_classes)``.
        labels: ``(B,)`` class indices, or ``(B, num_classes)`` target distributions (mixup,
            label smoothing), used as ``y``.
        gamma: the exponent, ``>= 1``.
        temperature: both distributions are taken at this temperature. Unlike :func:`kd_loss`
            there is no ``T^2`` factor, as in OFA.

    Computed in float32 whatever the input dtype. The teacher is not detached here.
    """
    if gamma < 1:
        raise ValueError(f"ofa_loss needs gamma >= 1 (gamma < 1 down-weights the target class), got {gamma}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    if labels.dim() == 1:
        target = F.one_hot(labels, num_classes=p_teacher.shape[-1]).float()
    else:
        target = labels.float()
    weights = (p_teacher + target).pow(gamma) - target
    return -(weights * log_p_student).sum(dim=-1).mean()
