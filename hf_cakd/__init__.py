"""hf_cakd: cross-architecture knowledge distillation (FBT, Fuse Before Transfer) for vision models."""

from .version import __version__

from .assistant import AssistantConfig, AssistantModel
from .backbones import StagedBackbone, StageInfo, register_adapter, staged_view
from .methods import MethodConfig, register_method
from .modeling_distillation import DistillationModel
from .model_specs import LabelMismatchError, load_classifier, load_image_processor
from .run.pipeline import DataArguments, ModelArguments, distill
from .training.trainer import DistillationTrainer
from .training.training_args import DistillationTrainingArguments

__all__ = [
    "AssistantConfig",
    "AssistantModel",
    "DataArguments",
    "DistillationModel",
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "LabelMismatchError",
    "MethodConfig",
    "ModelArguments",
    "StageInfo",
    "StagedBackbone",
    "distill",
    "load_classifier",
    "load_image_processor",
    "register_adapter",
    "register_method",
    "staged_view",
]
