"""Datasets for distillation.

loading: load a dataset and resolve its columns; transforms: per-model image transforms;
distillation: rows to student/teacher batches; errors: what can be wrong with a dataset.
"""

from .distillation import SKIPPED_IMAGES_KEY, DistillationCollator, DistillationTransform
from .errors import (
    ColumnNotFoundError,
    DataError,
    EmptySplitError,
    LabelColumnError,
    MissingImageError,
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
    "MissingImageError",
    "ModelInputSpec",
    "SKIPPED_IMAGES_KEY",
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
