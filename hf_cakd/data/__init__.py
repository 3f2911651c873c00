"""Datasets for distillation.

loading: load a dataset and resolve its columns; transforms: per-model image transforms;
distillation: rows to student/teacher batches; device_views: both models' training views made on
the device from one augmented image; errors: what can be wrong with a dataset.
"""

from .device_views import IMAGES_KEY, DeviceViews, SharedTrainTransform
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
    "DeviceViews",
    "DistillationCollator",
    "DistillationTransform",
    "EmptySplitError",
    "IMAGES_KEY",
    "ImageClassificationData",
    "LabelColumnError",
    "MissingImageError",
    "ModelInputSpec",
    "SKIPPED_IMAGES_KEY",
    "SharedTrainTransform",
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
