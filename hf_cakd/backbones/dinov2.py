"""Staged views of DINOv2 and DINOv2 with registers (transformers): isotropic token models.

Patch embedding with class (and register) tokens and the position embedding is the stem, the
layers split into four even groups, final norm + class token and patch-token mean + classifier are
the head. Every stage outputs ``(B, prefix + H*W, D)`` tokens. The embeddings resample the position
embedding to the input's patch grid and the layers attend over any number of tokens, so the view
runs at any size and on any grid.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Dinov2ForImageClassification, Dinov2WithRegistersForImageClassification

from .base import StagedBackbone, StageInfo, as_pair, split_evenly
from .registry import register_adapter


class Dinov2Head(nn.Module):
    """Final norm, then the classifier on the class token concatenated with the patch tokens' mean."""

    def __init__(self, norm: nn.Module, classifier: nn.Module, num_prefix_tokens: int):
        super().__init__()
        self.norm, self.classifier = norm, classifier
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, hidden):
        hidden = self.norm(hidden)
        patch_mean = hidden[:, self.num_prefix_tokens :].mean(dim=1)
        return self.classifier(torch.cat([hidden[:, 0], patch_mean], dim=1))


@register_adapter(Dinov2ForImageClassification, Dinov2WithRegistersForImageClassification)
def staged_hf_dinov2(model, image_size=None) -> StagedBackbone:
    config, encoder = model.config, model.base_model
    image_size = image_size or as_pair(config.image_size)
    patch = as_pair(config.patch_size)
    grid = (image_size[0] // patch[0], image_size[1] // patch[1])
    # The register tokens (if any) follow the class token.
    num_prefix_tokens = 1 + getattr(config, "num_register_tokens", 0)
    return StagedBackbone(
        model,
        family="attention",
        stem=encoder.embeddings,
        stages=split_evenly(list(encoder.encoder.layer)),
        head=Dinov2Head(encoder.layernorm, model.classifier, num_prefix_tokens),
        stage_infos=[StageInfo("tokens", config.hidden_size, grid, num_prefix_tokens)] * 4,
        image_size=image_size,
        runs_on_any_grid=True,
    )
