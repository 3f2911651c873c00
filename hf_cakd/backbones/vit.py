"""Staged views of ViT and DeiT (transformers and timm): isotropic token models.

Patch embedding with class/distillation tokens and position embedding is the stem, the blocks
split into four even groups, final norm + token pooling + classifier are the head. Every stage
outputs ``(B, prefix + H*W, D)`` tokens. After the stem, blocks attend over any number of tokens and
the head reads prefix tokens or a token mean, so the stages run on any grid (``runs_on_any_grid``).
"""

from __future__ import annotations

from timm.models.vision_transformer import VisionTransformer
from torch import nn
from transformers import DeiTForImageClassification, DeiTForImageClassificationWithTeacher, ViTForImageClassification

from .base import StagedBackbone, StageInfo, as_pair, split_evenly
from .parts import ModelMethod, fixed_image_size
from .registry import register_adapter, unwrap_timm

FIXED_GRID_REASON = "its position embedding covers a fixed patch grid"


class PrefixTokenHead(nn.Module):
    """Final norm, then classifier ``i`` on prefix token ``i``, logits averaged.

    ViT and DeiT classify the class token; DeiT's distilled model averages the class-token and
    distillation-token classifiers, as its ``forward`` does at inference.
    """

    def __init__(self, norm: nn.Module, classifiers: list[nn.Module]):
        super().__init__()
        self.norm = norm
        self.classifiers = nn.ModuleList(classifiers)

    def forward(self, hidden):
        hidden = self.norm(hidden)
        logits = [classifier(hidden[:, index]) for index, classifier in enumerate(self.classifiers)]
        return sum(logits) / len(logits)


@register_adapter(ViTForImageClassification, DeiTForImageClassification, DeiTForImageClassificationWithTeacher)
def staged_hf_vit(model, image_size=None) -> StagedBackbone:
    config, encoder = model.config, model.base_model
    image_size = fixed_image_size(type(model).__name__, config.image_size, image_size, FIXED_GRID_REASON)
    patch = as_pair(config.patch_size)
    grid = (image_size[0] // patch[0], image_size[1] // patch[1])
    # DeiT embeddings add a distillation token after the class token (both DeiT heads see it).
    num_prefix_tokens = 2 if hasattr(encoder.embeddings, "distillation_token") else 1
    if isinstance(model, DeiTForImageClassificationWithTeacher):
        classifiers = [model.cls_classifier, model.distillation_classifier]
    else:
        classifiers = [model.classifier]
    return StagedBackbone(
        model,
        family="attention",
        stem=encoder.embeddings,
        stages=split_evenly(list(encoder.layers)),
        head=PrefixTokenHead(encoder.layernorm, classifiers),
        stage_infos=[StageInfo("tokens", config.hidden_size, grid, num_prefix_tokens)] * 4,
        image_size=image_size,
        runs_on_any_grid=True,
    )


@register_adapter(VisionTransformer)
def staged_timm_vit(model, image_size=None) -> StagedBackbone:
    """timm ViT and its subclasses (``VisionTransformerDistilled`` for distilled DeiT).

    Token handling (class/register/distillation tokens, position-embedding variants) and pooling
    (``global_pool``, ``attn_pool``, ``fc_norm``, DeiT's averaged two heads) stay timm's: the stem
    and head call the model's ``_pos_embed`` and ``forward_head``.
    """
    vit = unwrap_timm(model)
    if vit.dynamic_img_size:  # timm resamples the position embedding to any input size
        image_size = image_size or as_pair(vit.patch_embed.img_size)
    else:
        image_size = fixed_image_size(type(vit).__name__, vit.patch_embed.img_size, image_size, FIXED_GRID_REASON)
    grid = tuple(vit.patch_embed.dynamic_feat_size(image_size))
    pos_embed = ModelMethod(vit, "_pos_embed", ("cls_token", "reg_token", "dist_token", "pos_embed", "pos_drop"))
    pool_and_classify = ModelMethod(vit, "forward_head", ("attn_pool", "fc_norm", "head_drop", "head", "head_dist"))
    return StagedBackbone(
        model,
        family="attention",
        stem=nn.Sequential(vit.patch_embed, pos_embed, vit.patch_drop, vit.norm_pre),
        stages=split_evenly(list(vit.blocks)),
        head=nn.Sequential(vit.norm, pool_and_classify),
        stage_infos=[StageInfo("tokens", vit.embed_dim, grid, vit.num_prefix_tokens)] * 4,
        image_size=image_size,
        runs_on_any_grid=True,
    )
