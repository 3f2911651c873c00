"""Tiny random-config classifiers, one builder per supported architecture.

Like transformers' ModelTesters: every model here runs in milliseconds. Builders take the number
of labels and return a model in eval mode at ``IMAGE_SIZE``. ``TINY_MODELS`` maps a readable id
to ``(family, builder)``; tests parametrise over it, so a new adapter adds its builder here.
"""

from __future__ import annotations

import torch
from transformers import ResNetConfig, ResNetForImageClassification

IMAGE_SIZE = 32
NUM_LABELS = 10


def hf_resnet(num_labels: int = NUM_LABELS):
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic", num_labels=num_labels
    )
    return ResNetForImageClassification(config)


TINY_MODELS = {
    "hf-resnet": ("cnn", hf_resnet),
}


def build(name: str, num_labels: int = NUM_LABELS, seed: int = 0):
    torch.manual_seed(seed)
    family, builder = TINY_MODELS[name]
    return builder(num_labels).eval()
