"""Staged views of Swin (transformers and timm): the four resolution stages.

Stage ``k`` outputs features at its own resolution (patch grid / 2^(k-1)): the patch merging that
halves the grid belongs to the start of the next stage. timm already builds its stages that way;
transformers merges at the end of a ``SwinStage``, so :class:`HFSwinStage` moves it.

Canonical layout: ``"tokens"`` ``(B, H*W, C)`` without prefix tokens, for both libraries. It is
transformers' native layout, and timm's NHWC tensors become it with a free reshape (a ``"map"``
would cost a permute copy at every stage boundary).
"""

from __future__ import annotations

import math

from timm.models.swin_transformer import SwinTransformer
from torch import nn
from transformers import SwinForImageClassification

from .base import NUM_STAGES, StagedBackbone, StageInfo, as_pair
from .parts import FirstOutput, fixed_image_size
from .registry import register_adapter, unwrap_timm


def stage_grids(patch_grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Each stage's grid: patch merging halves the previous one, padding odd sizes (both libraries)."""
    grids = [tuple(patch_grid)]
    for _ in range(NUM_STAGES - 1):
        height, width = grids[-1]
        grids.append(((height + 1) // 2, (width + 1) // 2))
    return grids


class HFSwinStage(nn.Module):
    """The previous ``SwinStage``'s patch merging (none for stage 1), then this stage's blocks.

    transformers' Swin modules take the grid as an argument; it is fixed here from the StageInfo.
    """

    def __init__(self, downsample: nn.Module | None, blocks: nn.ModuleList, input_grid, grid):
        super().__init__()
        self.downsample = downsample
        self.blocks = blocks
        self.input_grid, self.grid = tuple(input_grid), tuple(grid)

    def forward(self, hidden):
        if self.downsample is not None:
            hidden = self.downsample(hidden, self.input_grid)
        for block in self.blocks:
            hidden = block(hidden, self.grid)[0]
        return hidden


class HFSwinHead(nn.Module):
    """Final norm, average over tokens, classifier: ``SwinModel``'s pooler and the classifier."""

    def __init__(self, norm: nn.Module, pooler: nn.Module, classifier: nn.Module):
        super().__init__()
        self.norm, self.pooler, self.classifier = norm, pooler, classifier

    def forward(self, hidden):
        pooled = self.pooler(self.norm(hidden).transpose(1, 2)).flatten(1)
        return self.classifier(pooled)


@register_adapter(SwinForImageClassification)
def staged_hf_swin(model: SwinForImageClassification, image_size=None) -> StagedBackbone:
    config, swin = model.config, model.swin
    if config.use_absolute_embeddings:
        reason = "its absolute position embedding covers a fixed patch grid"
        image_size = fixed_image_size(type(model).__name__, config.image_size, image_size, reason)
    else:
        # Windows and patch merging pad what does not divide, so any size runs.
        image_size = image_size or as_pair(config.image_size)
    patch = as_pair(config.patch_size)
    # The patch embedding pads the image up to a multiple of the patch size.
    grids = stage_grids((math.ceil(image_size[0] / patch[0]), math.ceil(image_size[1] / patch[1])))
    stages, infos = [], []
    for index, layer in enumerate(swin.encoder.layers):
        downsample = swin.encoder.layers[index - 1].downsample if index else None
        stages.append(HFSwinStage(downsample, layer.blocks, grids[max(index - 1, 0)], grids[index]))
        infos.append(StageInfo("tokens", int(config.embed_dim * 2**index), grids[index]))
    return StagedBackbone(
        model,
        family="attention",
        stem=FirstOutput(swin.embeddings),
        stages=stages,
        head=HFSwinHead(swin.layernorm, swin.pooler, model.classifier),
        stage_infos=infos,
        image_size=image_size,
    )


@register_adapter(SwinTransformer)
def staged_timm_swin(model, image_size=None) -> StagedBackbone:
    swin = unwrap_timm(model)
    if swin.dynamic_img_size:  # timm then builds the shifted-window masks on every forward
        image_size = image_size or as_pair(swin.patch_embed.img_size)
    else:
        reason = "its shifted-window attention masks are built for a fixed feature grid"
        image_size = fixed_image_size(type(swin).__name__, swin.patch_embed.img_size, image_size, reason)
    grids = stage_grids(swin.patch_embed.dynamic_feat_size(image_size))
    # timm stages run on NHWC: unflatten the tokens at each stage's input grid, flatten after.
    stages = [
        nn.Sequential(nn.Unflatten(1, grids[max(index - 1, 0)]), layer, nn.Flatten(1, 2))
        for index, layer in enumerate(swin.layers)
    ]
    infos = [StageInfo("tokens", info["num_chs"], grid) for info, grid in zip(swin.feature_info, grids)]
    return StagedBackbone(
        model,
        family="attention",
        stem=nn.Sequential(swin.patch_embed, nn.Flatten(1, 2)),
        stages=stages,
        # timm's ClassifierHead pools NHWC over (H, W); forward_head is just self.head.
        head=nn.Sequential(nn.Unflatten(1, grids[-1]), swin.norm, swin.head),
        stage_infos=infos,
        image_size=image_size,
    )
