"""The staged view of vision classifiers (docs/method.md, "The staged view"): one adapter file per family."""

from .base import FAMILIES, NUM_STAGES, StagedBackbone, StagedOutput, StageInfo, to_map, to_tokens
from .registry import UnsupportedArchitectureError, register_adapter, staged_view, supported_architectures

# Importing an adapter module registers it.
from . import regnet, resnet  # noqa: E402,F401  isort: skip
from . import convnext, efficientnet, mobilenet  # noqa: E402,F401  isort: skip
from . import beit, dinov2, mixer, swin, vit  # noqa: E402,F401  isort: skip

__all__ = [
    "FAMILIES",
    "NUM_STAGES",
    "StageInfo",
    "StagedBackbone",
    "StagedOutput",
    "UnsupportedArchitectureError",
    "register_adapter",
    "staged_view",
    "supported_architectures",
    "to_map",
    "to_tokens",
]
