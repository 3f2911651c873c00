"""Distillation losses, one per file: pure functions or small modules that the methods compose."""

from .branch import LogitBranch
from .fitnet import FitNetLoss
from .infonce import FeatureProjector, LearnableTemperature, info_nce, smoothed_dim, spatial_smooth
from .kd import kd_loss
from .ofa import ofa_loss

__all__ = [
    "FeatureProjector",
    "FitNetLoss",
    "LearnableTemperature",
    "LogitBranch",
    "info_nce",
    "kd_loss",
    "ofa_loss",
    "smoothed_dim",
    "spatial_smooth",
]
