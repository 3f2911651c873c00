"""Staged view of transformers' EfficientNet (B0-B7): stride-2 stem, a flat list of MBConv blocks,
1x1 top conv + pool + classifier.

As for MobileNetV2 (mobilenet.py), the blocks are grouped by their output reduction into the last
four resolution levels (blocks at reduction 2 join stage 1) and the top convolution belongs to the
head.
"""

from torch import nn
from transformers import EfficientNetForImageClassification

from .base import StagedBackbone, StageInfo
from .cnn_grids import default_image_size
from .mobilenet import group_by_reduction
from .registry import register_adapter


def padded_conv_grid(grid: tuple[int, int], pad: nn.ZeroPad2d, conv: nn.Conv2d) -> tuple[int, int]:
    """The grid after an explicit ``pad`` and an unpadded ``conv``.

    transformers' EfficientNet pads its stem and stride-2 depthwise convolutions itself: by default
    only on the bottom/right (an odd size rounds down), symmetrically for the blocks the config lists
    in ``depthwise_padding`` (an odd size rounds up).
    """
    left, right, top, bottom = pad.padding
    (kernel_h, kernel_w), (stride_h, stride_w) = conv.kernel_size, conv.stride
    return (
        (grid[0] + top + bottom - kernel_h) // stride_h + 1,
        (grid[1] + left + right - kernel_w) // stride_w + 1,
    )


@register_adapter(EfficientNetForImageClassification)
def staged_hf_efficientnet(model: EfficientNetForImageClassification, image_size=None) -> StagedBackbone:
    net = model.efficientnet
    image_size = image_size or default_image_size(model)
    stem = net.embeddings
    reductions, reduction = [], stem.convolution.stride[0]
    for block in net.encoder.blocks:
        reduction *= block.depthwise_conv.stride
        reductions.append(reduction)
    stages, _ = group_by_reduction(list(net.encoder.blocks), reductions)
    grid, infos = padded_conv_grid(image_size, stem.padding, stem.convolution), []
    for stage in stages:
        for block in stage:
            if block.depthwise_conv.stride > 1:  # stride-1 depthwise convolutions pad "same"
                depthwise = block.depthwise_conv
                grid = padded_conv_grid(grid, depthwise.depthwise_conv_pad, depthwise.depthwise_conv)
        infos.append(StageInfo("map", stage[-1].projection.project_conv.out_channels, grid))
    encoder = net.encoder
    return StagedBackbone(
        model,
        family="cnn",
        stem=stem,
        stages=stages,
        # EfficientNetModel's pooler pools with a kernel as large as the top conv's width (global
        # pooling at any usual grid) and reshapes (B, C, 1, 1) to (B, C).
        head=nn.Sequential(
            encoder.top_conv,
            encoder.top_bn,
            encoder.top_activation,
            net.pooler,
            nn.Flatten(1),
            model.dropout,
            model.classifier,
        ),
        stage_infos=infos,
        image_size=image_size,
    )
