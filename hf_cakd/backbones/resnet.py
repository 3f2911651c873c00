"""Staged views of ResNet (transformers and timm): stem, the four residual stages, pool + classifier."""

from timm.models.resnet import ResNet
from torch import nn
from transformers import ResNetForImageClassification

from .base import StagedBackbone
from .cnn_grids import default_image_size, map_stage_infos, timm_stage_infos
from .parts import ModelMethod
from .registry import register_adapter, unwrap_timm


def staged_hf_resnet_layout(model, embedder_reduction: int, image_size=None) -> StagedBackbone:
    """transformers' ResNet layout (ResNet, and RegNet, written after it): embedder, ``encoder.stages``,
    pooler + classifier. Stage 1 halves the grid only with ``downsample_in_first_stage``, every later
    stage does."""
    config, body = model.config, model.base_model
    image_size = image_size or default_image_size(model)
    first_reduction = embedder_reduction * (2 if config.downsample_in_first_stage else 1)
    reductions = [first_reduction * 2**index for index in range(len(config.hidden_sizes))]
    return StagedBackbone(
        model,
        family="cnn",
        stem=body.embedder,
        stages=list(body.encoder.stages),
        head=nn.Sequential(body.pooler, model.classifier),  # RegNet's classifier flattens first
        stage_infos=map_stage_infos(config.hidden_sizes, reductions, image_size),
        image_size=image_size,
    )


@register_adapter(ResNetForImageClassification)
def staged_hf_resnet(model: ResNetForImageClassification, image_size=None) -> StagedBackbone:
    return staged_hf_resnet_layout(model, 4, image_size)  # the embedder: a 7x7/2 conv and a 3x3/2 max-pool


@register_adapter(ResNet)
def staged_timm_resnet(model, image_size=None) -> StagedBackbone:
    """timm ResNet and its variants (deep stems, average-pool downsampling, SE, anti-aliasing)."""
    resnet = unwrap_timm(model)
    image_size = image_size or default_image_size(model)
    return StagedBackbone(
        model,
        family="cnn",
        # What forward_features runs before layer1; conv1 and maxpool are Sequentials in variants.
        stem=nn.Sequential(resnet.conv1, resnet.bn1, resnet.act1, resnet.maxpool),
        stages=[resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4],
        # forward_head keeps timm's pooling type and its functional dropout.
        head=ModelMethod(resnet, "forward_head", ("global_pool", "fc")),
        stage_infos=timm_stage_infos(model, image_size),  # feature_info: the stem, then layer1..layer4
        image_size=image_size,
    )
