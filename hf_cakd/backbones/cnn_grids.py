"""What the CNN adapters share: the resolution a CNN was built for and its stage feature grids.

A CNN runs at any input size, so its stage infos are computed for the requested one from each
stage's channels and reduction (the total stride in front of it), with no dry run.
"""

from __future__ import annotations

from torch import nn

from .base import StageInfo, as_pair
from .registry import unwrap_timm

DEFAULT_IMAGE_SIZE = 224


def default_image_size(model: nn.Module) -> tuple[int, int]:
    """timm's ``pretrained_cfg['input_size']``, transformers' ``config.image_size``, else 224."""
    pretrained_cfg = getattr(unwrap_timm(model), "pretrained_cfg", None) or {}
    if "input_size" in pretrained_cfg:
        return as_pair(pretrained_cfg["input_size"][1:])
    return as_pair(getattr(getattr(model, "config", None), "image_size", DEFAULT_IMAGE_SIZE))


def map_stage_infos(
    channels: list[int], reductions: list[int], image_size: tuple[int, int], padded: bool = True
) -> list[StageInfo]:
    """``"map"`` infos of stages with the given output channels and reductions at ``image_size``.

    ``padded``: the downsampling convolutions and pools pad their input (3x3/2 with padding 1, or
    TF "same"), so a size the reduction does not divide rounds up, as in ResNet and MobileNet
    (EfficientNet-B1's 240 pixels give a 8x8 last stage, not 7x7). Unpadded kernel = stride
    convolutions (ConvNeXt's patchify stem and downsampling) round down.
    """
    infos = []
    for stage_channels, reduction in zip(channels, reductions):
        if padded:
            grid = tuple(-(-size // reduction) for size in image_size)
        else:
            grid = tuple(size // reduction for size in image_size)
        infos.append(StageInfo("map", int(stage_channels), grid))
    return infos


def timm_stage_infos(model: nn.Module, image_size: tuple[int, int]) -> list[StageInfo]:
    """The infos of a timm CNN's last four ``feature_info`` entries (its four stages; padded convolutions)."""
    features = unwrap_timm(model).feature_info[-4:]
    return map_stage_infos([f["num_chs"] for f in features], [f["reduction"] for f in features], image_size)
