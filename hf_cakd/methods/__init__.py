"""Distillation methods, one recipe per file, chosen by name (``none``, ``kd``, ``feature_kd``, ``fitnet``, ``ofa``, ``fbt``)."""

from .base import (
    METHOD_STATE_NAME,
    METHODS,
    DistillationMethod,
    MethodConfig,
    method_class,
    method_config,
    register_method,
)

# Importing a method module registers it.
from . import fbt, feature_kd, fitnet, kd, none, ofa  # noqa: E402,F401  isort: skip

__all__ = [
    "METHODS",
    "METHOD_STATE_NAME",
    "DistillationMethod",
    "MethodConfig",
    "method_class",
    "method_config",
    "register_method",
]
