"""Small pieces the adapters share: calling a model method as a module, fixed-size checks."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..errors import UsageError
from .base import as_pair


class FixedImageSizeError(UsageError, ValueError):
    """A model that runs only at its configured input size was asked for another one."""


class FirstOutput(nn.Module):
    """A module's first output: transformers' Swin and Data2Vec-Vision embeddings also return the patch grid
    (the StageInfo has it)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, hidden):
        return self.module(hidden)[0]


class ModelMethod(nn.Module):
    """One method of a model (timm's ``_pos_embed``, ``forward_head``) as a module of its own.

    timm keeps token and pooling logic (class/register/distillation tokens, position-embedding
    variants, pooling type) in model methods; calling the method keeps that logic timm's. The
    ``parts`` the method reads are registered here, so the staged view owns their parameters and
    ``train()``/``eval()`` reaches their dropouts. Parts the model lacks or sets to ``None`` are
    skipped, so one list covers a family's variants.
    """

    def __init__(self, model: nn.Module, method: str, parts: Iterable[str]):
        super().__init__()
        self.method = method
        for name in parts:
            part = getattr(model, name, None)
            if isinstance(part, nn.Parameter):
                self.register_parameter(name, part)
            elif isinstance(part, nn.Module):
                self.add_module(name, part)
        # Not a submodule: only the parts above belong to this piece of the view.
        self.__dict__["model"] = model

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(hidden)

    def extra_repr(self) -> str:
        return f"{type(self.model).__name__}.{self.method}"


def fixed_image_size(model_name: str, configured, requested, reason: str) -> tuple[int, int]:
    """The configured input size of a model that runs only at it; reject any other request."""
    configured = as_pair(configured)
    if requested is not None and tuple(requested) != configured:
        raise FixedImageSizeError(
            f"{model_name} runs only at its configured image size {configured[0]}x{configured[1]} "
            f"({reason}), but image_size {requested[0]}x{requested[1]} was requested. Ask for "
            f"{configured[0]} px (--student_image_size/--teacher_image_size), or build the model for the "
            "new size (a timm: model built from scratch is built for its --<role>_image_size)."
        )
    return configured
