"""Staged views of RegNet (transformers and timm): stem, the four stages, pool + classifier."""

from timm.models.regnet import RegNet
from torch import nn
from transformers import RegNetForImageClassification

from .base import StagedBackbone
from .cnn_grids import default_image_size, timm_stage_infos
from .registry import register_adapter, unwrap_timm
from .resnet import staged_hf_resnet_layout


@register_adapter(RegNetForImageClassification)
def staged_hf_regnet(model: RegNetForImageClassification, image_size=None) -> StagedBackbone:
    return staged_hf_resnet_layout(model, 2, image_size)  # the embedder: a 3x3/2 conv


@register_adapter(RegNet)
def staged_timm_regnet(model, image_size=None) -> StagedBackbone:
    """timm RegNet-X/Y/Z and the pre-activation RegNetV."""
    regnet = unwrap_timm(model)
    image_size = image_size or default_image_size(model)
    return StagedBackbone(
        model,
        family="cnn",
        stem=regnet.stem,
        stages=[regnet.s1, regnet.s2, regnet.s3, regnet.s4],
        # forward_features ends with final_conv (a 1x1 conv, the final activation of linear-output
        # and pre-activation variants, or Identity); forward_head is just self.head.
        head=nn.Sequential(regnet.final_conv, regnet.head),
        stage_infos=timm_stage_infos(model, image_size),  # feature_info: the stem, then s1..s4
        image_size=image_size,
    )
