"""Tiny random-config classifiers, one builder per supported architecture.

Like transformers' ModelTesters: every model here runs in milliseconds. Builders take the number
of labels and return a freshly initialised model at ``IMAGE_SIZE``. ``TINY_MODELS`` maps a
readable id to ``(family, builder)``; tests parametrise over it, so each new adapter adds its
builder to the table of its kind below.
"""

from __future__ import annotations

import torch
from transformers import ResNetConfig, ResNetForImageClassification, TimmWrapperConfig, TimmWrapperForImageClassification

IMAGE_SIZE = 32
NUM_LABELS = 10


def timm_classifier(architecture: str, num_labels: int, **model_args):
    """A timm model the transformers way (what ``timm/<name>`` specs load into)."""
    config = TimmWrapperConfig(architecture=architecture, model_args=model_args, num_labels=num_labels)
    return TimmWrapperForImageClassification(config)


def hf_resnet(num_labels: int = NUM_LABELS):
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic", num_labels=num_labels
    )
    return ResNetForImageClassification(config)


# CNN families (ResNet, MobileNetV2, ConvNeXt; transformers and timm).
CNN_MODELS = {
    "hf-resnet": ("cnn", hf_resnet),
}

# Attention and MLP families (ViT, DeiT, Swin; MLP-Mixer, ResMLP; transformers and timm).
TOKEN_MODELS = {}

TINY_MODELS = {**CNN_MODELS, **TOKEN_MODELS}


def build(name: str, num_labels: int = NUM_LABELS, seed: int = 0):
    """The tiny model ``name`` in eval mode, with weights fixed by ``seed``."""
    torch.manual_seed(seed)
    family, builder = TINY_MODELS[name]
    return builder(num_labels).eval()
