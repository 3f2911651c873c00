"""What every distillation method shares: its inputs, the supervised term, the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import StagedBackbone, StagedOutput

if TYPE_CHECKING:
    from ..trainer import DistillationTrainingArguments

METHODS: dict[str, type["DistillationMethod"]] = {}


def register_method(name: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorator


def method_class(name: str) -> type["DistillationMethod"]:
    if name not in METHODS:
        raise ValueError(f"Unknown distillation method {name!r}; choose one of {', '.join(sorted(METHODS))}.")
    return METHODS[name]


class DistillationMethod(nn.Module):
    """A recipe: which features it taps, which losses it adds, which extra parts it trains.

    The module holds only the method's own trainable parts (projectors, branches, bridge,
    temperatures). The student's and teacher's staged views are kept by reference so that their
    parameters are owned, saved and synchronised once, by the student and the teacher.

    ``forward`` returns the named, weighted loss terms; the total loss is their sum.
    """

    name: ClassVar[str]
    requires_teacher: ClassVar[bool] = True

    def __init__(
        self, student: StagedBackbone, teacher: StagedBackbone | None, args: "DistillationTrainingArguments"
    ):
        super().__init__()
        if self.requires_teacher and teacher is None:
            raise ValueError(f"The {self.name!r} method distils from a teacher: pass teacher_model.")
        self.__dict__["student_view"] = student
        self.__dict__["teacher_view"] = teacher
        self.ce_weight = args.ce_weight

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * F.cross_entropy(logits.float(), labels)

    def forward(
        self, student: StagedOutput, teacher: StagedOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def learned_temperatures(self) -> dict[str, float]:
        """Current values of learnable temperatures, for logging."""
        return {}
