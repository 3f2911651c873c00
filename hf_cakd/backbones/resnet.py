"""Staged view of transformers' ResNet: embedder, the four encoder stages, pool + classifier."""

from torch import nn
from transformers import ResNetForImageClassification

from .base import StagedBackbone, StageInfo, grid_at
from .registry import register_adapter

DEFAULT_IMAGE_SIZE = (224, 224)


@register_adapter(ResNetForImageClassification)
def staged_hf_resnet(model: ResNetForImageClassification, image_size=None) -> StagedBackbone:
    config = model.config
    image_size = image_size or DEFAULT_IMAGE_SIZE
    # The embedder (7x7/2 conv + 3x3/2 max-pool) reduces by 4; stage 1 keeps the resolution
    # unless downsample_in_first_stage, every later stage halves it.
    reduction = 4 * (2 if config.downsample_in_first_stage else 1)
    infos = []
    for channels in config.hidden_sizes:
        infos.append(StageInfo("map", channels, grid_at(image_size, reduction)))
        reduction *= 2
    head = nn.Sequential(model.resnet.pooler, model.classifier)
    return StagedBackbone(
        model,
        family="cnn",
        stem=model.resnet.embedder,
        stages=list(model.resnet.encoder.stages),
        head=head,
        stage_infos=infos,
        image_size=image_size,
    )
