"""RSD's redundancy-suppression loss (Zhang et al., ICCV 2025; docs/method.md, "rsd").

Each side's features are standardised over the batch, per dimension; their cross-correlation
``C = T^T S / B`` should be the identity: each student dimension carries what the teacher's
dimension of the same index carries (the diagonal at 1), and no more of the teacher's other
dimensions (the off-diagonal at 0, weighed ``kappa``). Standardising leaves only what varies
across images, so the loss asks nothing of where a model keeps its features, nor at what
scale or offset: only which images it tells apart.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import gather_rows

STANDARDISE_EPS = 1e-5


def standardise(features: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """``(features - mean) / (std + eps)`` per dimension over the batch (``(B, d)``; the biased std)."""
    return (features - features.mean(dim=0)) / (features.std(dim=0, unbiased=False) + eps)


def redundancy_suppression_loss(
    student: torch.Tensor, teacher: torch.Tensor, kappa: float = 0.01, gather_across_processes: bool = True
) -> torch.Tensor:
    """``sum_i (C_ii - 1)^2 + kappa * sum_{i != j} C_ij^2`` for ``C = std(T)^T std(S) / B``, in float32.

    ``student`` ``(B, d)`` is the projected student feature, ``teacher`` ``(B, d)`` the teacher's, of the
    same width. Under ``torch.distributed`` with ``gather_across_processes`` the statistics and ``C`` are
    the global batch's (every process's rows, gathered with their gradients): every process returns the
    same loss, that of one process with the whole batch, and DDP's averaged gradients are its gradient.
    """
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"student and teacher features must both be (B, d), got {tuple(student.shape)} and {tuple(teacher.shape)}")
    with torch.autocast(device_type=student.device.type, enabled=False):
        student, teacher = student.float(), teacher.float()
        if gather_across_processes:
            student, teacher = gather_rows(student), gather_rows(teacher)
        correlation = standardise(teacher).T @ standardise(student) / student.shape[0]
        diagonal = correlation.diagonal()
        on_diagonal = (diagonal - 1).pow(2).sum()
        off_diagonal = correlation.pow(2).sum() - diagonal.pow(2).sum()
        return on_diagonal + kappa * off_diagonal


class RSDProjector(nn.Module):
    """RSD's student projector: ``Linear(d_s, r*d_s) -> BatchNorm1d -> GELU -> Linear(r*d_s, d_t)``, no biases
    (the loss standardises its output, which would cancel them)."""

    def __init__(self, in_dim: int, out_dim: int, expansion: int = 2):
        super().__init__()
        hidden_dim = expansion * in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, out_dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
