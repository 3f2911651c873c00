"""Datasets for distillation.

loading: load a dataset and resolve its columns; transforms: per-model image transforms;
distillation: rows to student/teacher batches; errors: what can be wrong with a dataset.
"""

from .distillation import DistillationCollator, DistillationTransform
from .errors import (
    ColumnNotFoundError,
    DataError,
    EmptySplitError,
    LabelColumnError,
    SplitNotFoundError,
    UndecodableImageError,
)
from .loading import ImageClassificationData, load_image_dataset
from .transforms import (
    EvalTransform,
    ModelInputSpec,
    TrainTransform,
    eval_transform,
    image_processor_for,
    image_transforms,
    model_input_spec,
    to_rgb,
)

__all__ = [
    "ColumnNotFoundError",
    "DataError",
    "DistillationCollator",
    "DistillationTransform",
    "EmptySplitError",
    "ImageClassificationData",
    "LabelColumnError",
    "ModelInputSpec",
    "SplitNotFoundError",
    "EvalTransform",
    "TrainTransform",
    "UndecodableImageError",
    "eval_transform",
    "image_processor_for",
    "image_transforms",
    "load_image_dataset",
    "model_input_spec",
    "to_rgb",
]
