"""Staged view of timm's MlpMixer (MLP-Mixer and ResMLP): an isotropic token model.

The patch embedding is the stem, the blocks split into four even groups, final norm + token
average + classifier are the head. Every stage outputs ``(B, H*W, D)`` tokens, no prefix.
"""

from __future__ import annotations

from timm.models.mlp_mixer import MlpMixer
from torch import nn

from .base import StagedBackbone, StageInfo, split_evenly
from .parts import ModelMethod, fixed_image_size
from .registry import register_adapter, unwrap_timm


@register_adapter(MlpMixer)
def staged_timm_mixer(model, image_size=None) -> StagedBackbone:
    mixer = unwrap_timm(model)
    reason = "its token-mixing layers are sized for a fixed number of patches"
    image_size = fixed_image_size(type(mixer).__name__, mixer.stem.img_size, image_size, reason)
    grid = tuple(mixer.stem.grid_size)
    return StagedBackbone(
        model,
        family="mlp",
        stem=mixer.stem,
        stages=split_evenly(list(mixer.blocks)),
        # forward_head keeps timm's pooling choice (``global_pool``).
        head=nn.Sequential(mixer.norm, ModelMethod(mixer, "forward_head", ("head_drop", "head"))),
        stage_infos=[StageInfo("tokens", mixer.embed_dim, grid)] * 4,
        image_size=image_size,
    )
