"""Distillation losses, one per file: pure functions or small modules that the methods compose."""

from .branch import LogitBranch
from .fitnet import FitNetLoss
from .infonce import FeatureProjector, LearnableTemperature, info_nce, smoothed_dim, spatial_smooth
from .kd import kd_loss
from .ofa import ofa_loss
from .rsd import RSDProjector, redundancy_suppression_loss

__all__ = [
    "FeatureProjector",
    "FitNetLoss",
    "LearnableTemperature",
    "LogitBranch",
    "RSDProjector",
    "info_nce",
    "kd_loss",
    "ofa_loss",
    "redundancy_suppression_loss",
    "smoothed_dim",
    "spatial_smooth",
]
