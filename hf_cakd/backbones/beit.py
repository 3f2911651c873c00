"""Staged views of BEiT and Data2Vec-Vision (transformers): isotropic token models.

Patch embedding with class token (and absolute position embedding, if any) is the stem, the layers
split into four even groups, final norm + pooling (patch-token mean with its norm, or the class
token) + classifier are the head. Every stage outputs ``(B, 1 + H*W, D)`` tokens.
"""

from __future__ import annotations

from torch import nn
from transformers import BeitForImageClassification, Data2VecVisionForImageClassification
from transformers.models.data2vec.modeling_data2vec_vision import Data2VecVisionLayer

from .base import StagedBackbone, StageInfo, as_pair, split_evenly
from .parts import FirstOutput
from .registry import register_adapter


class HFBeitBlock(nn.Module):
    """One layer at a fixed input resolution, with the model's shared relative position bias (if any).

    The relative position biases are built for the patch grid of the input resolution, which the
    model passes to every layer; here it is fixed from the staged view's image size.
    """

    def __init__(self, layer: nn.Module, shared_bias: nn.Module | None, resolution, patch_size):
        super().__init__()
        self.layer, self.shared_bias = layer, shared_bias
        self.resolution = tuple(resolution)
        self.window_size = (resolution[0] // patch_size[0], resolution[1] // patch_size[1])

    def forward(self, hidden):
        bias = None if self.shared_bias is None else self.shared_bias(self.window_size, dim_size=hidden.shape[1])
        if isinstance(self.layer, Data2VecVisionLayer):  # takes the bias as an argument, returns a tuple
            return self.layer(hidden, relative_position_bias=bias, resolution=self.resolution)[0]
        return self.layer(hidden, attention_mask=bias, resolution=self.resolution)


@register_adapter(BeitForImageClassification, Data2VecVisionForImageClassification)
def staged_hf_beit(model, image_size=None) -> StagedBackbone:
    config, encoder = model.config, model.base_model
    # The embeddings resample the absolute position embedding and the layers their relative
    # position bias table to the input's patch grid, so any size runs.
    image_size = image_size or as_pair(config.image_size)
    patch = as_pair(config.patch_size)
    if isinstance(model, Data2VecVisionForImageClassification):
        stem, layers = FirstOutput(encoder.embeddings), encoder.encoder.layer
        shared_bias = encoder.encoder.relative_position_bias if encoder.encoder.has_relative_position_bias else None
    else:
        stem, layers, shared_bias = encoder.embeddings, encoder.layers, encoder.shared_position_bias
    blocks = [HFBeitBlock(layer, shared_bias, image_size, patch) for layer in layers]
    grid = (image_size[0] // patch[0], image_size[1] // patch[1])
    return StagedBackbone(
        model,
        family="attention",
        stem=stem,
        stages=split_evenly(blocks),
        # layernorm is Identity with use_mean_pooling, where the pooler norms the patch-token mean.
        head=nn.Sequential(encoder.layernorm, encoder.pooler, model.classifier),
        stage_infos=[StageInfo("tokens", config.hidden_size, grid, 1)] * 4,
        image_size=image_size,
        # Relative position biases are sized for the stage infos' grid.
        runs_on_any_grid=not (config.use_relative_position_bias or config.use_shared_relative_position_bias),
    )
