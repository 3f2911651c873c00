"""Staged views of ConvNeXt (transformers ConvNeXt and ConvNeXt V2, timm): patchify stem, the
four stages (each opens with its own downsampling), final norm + pooling + classifier.
"""

from timm.models.convnext import ConvNeXt
from torch import nn
from transformers import ConvNextForImageClassification, ConvNextV2ForImageClassification

from .base import StagedBackbone
from .cnn_grids import default_image_size, map_stage_infos
from .registry import register_adapter, unwrap_timm


@register_adapter(ConvNextForImageClassification, ConvNextV2ForImageClassification)
def staged_hf_convnext(model, image_size=None) -> StagedBackbone:
    """V2 only adds GRN inside the blocks: both share this module layout."""
    config, convnext = model.config, model.base_model
    image_size = image_size or default_image_size(model)
    # The patch_size x patch_size patchify stem reduces by patch_size; stages 2-4 halve the grid.
    reductions = [config.patch_size * 2**index for index in range(len(config.hidden_sizes))]
    return StagedBackbone(
        model,
        family="cnn",
        stem=convnext.embeddings,
        stages=list(convnext.encoder.stages),
        # ConvNextModel averages over (H, W), then applies its final LayerNorm to the pooled vector.
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), convnext.layernorm, model.classifier),
        stage_infos=map_stage_infos(config.hidden_sizes, reductions, image_size, padded=False),
        image_size=image_size,
    )


@register_adapter(ConvNeXt)
def staged_timm_convnext(model, image_size=None) -> StagedBackbone:
    convnext = unwrap_timm(model)
    image_size = image_size or default_image_size(model)
    features = convnext.feature_info
    # Grids round down after the stem: the downsampling convolutions are 2x2/2 without padding. The
    # patchify stem (kernel = stride) rounds down too; the two padded 3x3/2 convolutions of the
    # "overlap" stems (the *_ols variants) round up, to ceil(size / 4).
    overlap_stem = convnext.stem[0].padding != (0, 0)
    stem_reduction = 4 if overlap_stem else convnext.stem[0].stride[0]
    stem_grid = tuple(-(-size // stem_reduction) if overlap_stem else size // stem_reduction for size in image_size)
    return StagedBackbone(
        model,
        family="cnn",
        stem=convnext.stem,
        stages=list(convnext.stages),
        # norm_pre is the final norm of head_norm_first variants (Identity otherwise);
        # forward_head is just self.head.
        head=nn.Sequential(convnext.norm_pre, convnext.head),
        stage_infos=map_stage_infos(
            [feature["num_chs"] for feature in features],
            [feature["reduction"] // stem_reduction for feature in features],
            stem_grid,
            padded=False,
        ),
        image_size=image_size,
    )
