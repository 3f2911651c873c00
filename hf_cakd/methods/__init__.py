"""Distillation methods, one recipe per file, chosen by name (``none``, ``kd``, ``fitnet``, ``ofa``, ``fbt``)."""

from .base import METHODS, DistillationMethod, method_class, register_method

# Importing a method module registers it.
from . import fbt, fitnet, kd, none, ofa  # noqa: E402,F401  isort: skip

__all__ = ["METHODS", "DistillationMethod", "method_class", "register_method"]
