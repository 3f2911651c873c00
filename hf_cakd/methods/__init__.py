"""Distillation methods, one recipe per file, chosen by name (``none``, ``kd``, ``feature_kd``, ``fitnet``, ``ofa``, ``rsd``, ``fbt``)."""

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
from . import fbt, feature_kd, fitnet, kd, none, ofa, rsd  # noqa: E402,F401  isort: skip

AUTO_METHOD = "auto"
BEST_METHOD_FOR_STUDENT = {"cnn": "ofa", "attention": "rsd", "mlp": "rsd"}
"""What ``--method auto`` (the default) distils with, by the student's family: the method the accuracy benchmark
measured best for students of that family (docs/method.md, "Which method by default")."""

__all__ = [
    "AUTO_METHOD",
    "BEST_METHOD_FOR_STUDENT",
    "METHODS",
    "METHOD_STATE_NAME",
    "DistillationMethod",
    "MethodConfig",
    "method_class",
    "method_config",
    "register_method",
]
