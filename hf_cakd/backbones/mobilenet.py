"""Staged views of the MobileNets: transformers MobileNetV1 and MobileNetV2, timm's EfficientNet
class (MobileNetV2, EfficientNet, MnasNet, ...) and MobileNetV3 class: a stride-2 stem, a stack
of (inverted-residual or depthwise-separable) blocks, pooling + classifier.

The four stages are the blocks up to the outputs at reductions 4, 8, 16 and 32; blocks at
reduction 2 join stage 1, and the final 1x1 convolution (to 1280 channels in MobileNetV2) belongs
to the head (timm's MobileNetV3 makes its last 1x1 convolution a block of the last stack, so it
ends stage 4, as in timm's feature maps). The split comes from the blocks' strides, so
width/depth multipliers change nothing.
"""

from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from torch import nn
from transformers import MobileNetV1ForImageClassification, MobileNetV2ForImageClassification

from .base import NUM_STAGES, StagedBackbone
from .cnn_grids import default_image_size, map_stage_infos, timm_stage_infos
from .parts import ModelMethod
from .registry import UnsupportedArchitectureError, register_adapter, unwrap_timm


def group_by_reduction(blocks: list[nn.Module], reductions: list[int]) -> tuple[list[nn.Sequential], list[int]]:
    """Consecutive blocks grouped by their output reduction into the last four levels; blocks at
    earlier levels join the first group. Returns the groups and their reductions."""
    levels = sorted(set(reductions))[-NUM_STAGES:]
    if len(levels) < NUM_STAGES:
        raise UnsupportedArchitectureError(
            f"the blocks reach only the reductions {levels}; a staged view needs {NUM_STAGES} "
            "resolution levels (a dilated model with output_stride < 32 has fewer)"
        )
    groups = [[] for _ in levels]
    for block, reduction in zip(blocks, reductions):
        groups[levels.index(reduction) if reduction in levels else 0].append(block)
    return [nn.Sequential(*group) for group in groups], levels


@register_adapter(MobileNetV2ForImageClassification)
def staged_hf_mobilenet_v2(model: MobileNetV2ForImageClassification, image_size=None) -> StagedBackbone:
    mobilenet = model.mobilenet_v2
    image_size = image_size or default_image_size(model)
    # The stem (3x3/2 conv and the first, stride-1 separable block) reduces by 2; a block's
    # stride is its depthwise convolution's.
    reductions, reduction = [], mobilenet.conv_stem.first_conv.convolution.stride[0]
    for block in mobilenet.layer:
        reduction *= block.conv_3x3.convolution.stride[0]
        reductions.append(reduction)
    stages, levels = group_by_reduction(list(mobilenet.layer), reductions)
    channels = [stage[-1].reduce_1x1.convolution.out_channels for stage in stages]
    return StagedBackbone(
        model,
        family="cnn",
        stem=mobilenet.conv_stem,
        stages=stages,
        head=nn.Sequential(mobilenet.conv_1x1, mobilenet.pooler, nn.Flatten(1), model.dropout, model.classifier),
        stage_infos=map_stage_infos(channels, levels, image_size),
        image_size=image_size,
    )


@register_adapter(MobileNetV1ForImageClassification)
def staged_hf_mobilenet_v1(model: MobileNetV1ForImageClassification, image_size=None) -> StagedBackbone:
    mobilenet = model.mobilenet_v1
    image_size = image_size or default_image_size(model)
    # mobilenet.layer alternates 3x3 depthwise (which carry the strides) and 1x1 pointwise convolutions.
    reductions, reduction = [], mobilenet.conv_stem.convolution.stride[0]
    for layer in mobilenet.layer:
        reduction *= layer.convolution.stride[0]
        reductions.append(reduction)
    stages, levels = group_by_reduction(list(mobilenet.layer), reductions)
    return StagedBackbone(
        model,
        family="cnn",
        stem=mobilenet.conv_stem,
        stages=stages,
        head=nn.Sequential(mobilenet.pooler, nn.Flatten(1), model.dropout, model.classifier),
        # TF "same" padding (tf_padding) and the padding of 1 both round an odd size up.
        stage_infos=map_stage_infos([stage[-1].convolution.out_channels for stage in stages], levels, image_size),
        image_size=image_size,
    )


@register_adapter(EfficientNet, MobileNetV3)
def staged_timm_efficientnet(model, image_size=None) -> StagedBackbone:
    """timm's EfficientNet class and its MobileNetV3 class (also LCNet, FBNetV3, MobileNetV4)."""
    net = unwrap_timm(model)
    image_size = image_size or default_image_size(model)
    # net.blocks holds one Sequential per stack of blocks. feature_info has an entry for the last
    # stack of every resolution level; its "stage" is the index just past that stack.
    ends = [feature["stage"] for feature in net.feature_info[-NUM_STAGES:]]
    starts = [0, *ends[:-1]]  # stage 1 also takes the stacks at reduction 2
    if isinstance(net, MobileNetV3):
        # The last stack's 1x1 conv is a block (stage 4); forward_head pools first, then runs the
        # 1x1 conv_head, its norm and activation, and timm's functional dropout.
        head = ModelMethod(net, "forward_head", ("global_pool", "conv_head", "norm_head", "act2", "flatten", "classifier"))
    else:
        # forward_features ends with the 1x1 conv_head + bn2; forward_head keeps timm's pooling
        # type and its functional dropout.
        head = nn.Sequential(net.conv_head, net.bn2, ModelMethod(net, "forward_head", ("global_pool", "classifier")))
    return StagedBackbone(
        model,
        family="cnn",
        stem=nn.Sequential(net.conv_stem, net.bn1),
        stages=[nn.Sequential(*net.blocks[start:end]) for start, end in zip(starts, ends)],
        head=head,
        stage_infos=timm_stage_infos(model, image_size),
        image_size=image_size,
    )
