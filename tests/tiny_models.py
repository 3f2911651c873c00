"""Tiny random-config classifiers, one builder per supported architecture.

Like transformers' ModelTesters: every model here runs in milliseconds. Builders take the number
of labels and return a freshly initialised model at ``IMAGE_SIZE``. ``TINY_MODELS`` maps a
readable id to ``(family, builder)``; tests parametrise over it, so each new adapter adds its
builder to the table of its kind below.
"""

from __future__ import annotations

import torch
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock
from transformers import BeitConfig, BeitForImageClassification
from transformers import Data2VecVisionConfig, Data2VecVisionForImageClassification
from transformers import Dinov2Config, Dinov2ForImageClassification
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersForImageClassification
from transformers import EfficientNetConfig, EfficientNetForImageClassification
from transformers import MobileNetV1Config, MobileNetV1ForImageClassification
from transformers import RegNetConfig, RegNetForImageClassification
from transformers import ResNetConfig, ResNetForImageClassification, TimmWrapperConfig, TimmWrapperForImageClassification
from transformers import ConvNextConfig, ConvNextForImageClassification
from transformers import ConvNextV2Config, ConvNextV2ForImageClassification
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification
from transformers import DeiTConfig, DeiTForImageClassification, DeiTForImageClassificationWithTeacher
from transformers import SwinConfig, SwinForImageClassification, ViTConfig, ViTForImageClassification

IMAGE_SIZE = 32
NUM_LABELS = 10
# Narrow heads of the methods' own (FBT's projectors, OFA's branches) for tiny models.
SMALL_HEADS = {"fbt_projector_dim": 16, "ofa_branch_dim": 16}


def small_heads(method: str) -> dict[str, int]:
    """The options of ``SMALL_HEADS`` that ``method`` has."""
    from hf_cakd.methods import method_class

    names = method_class(method).config_class.option_names()
    return {name: width for name, width in SMALL_HEADS.items() if name in names}


def timm_classifier(architecture: str, num_labels: int, **model_args):
    """A timm model the transformers way (what ``timm/<name>`` specs load into)."""
    config = TimmWrapperConfig(architecture=architecture, model_args=model_args, num_labels=num_labels)
    return TimmWrapperForImageClassification(config)


def hf_resnet(num_labels: int = NUM_LABELS):
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic", num_labels=num_labels
    )
    return ResNetForImageClassification(config)


# Layer scale 1 and no zero-initialised last norms, so that every block changes the features and
# a block the staged view skipped or reordered shows in the logits.
TINY_CONVNEXT = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], layer_scale_init_value=1.0)


def timm_resnet(num_labels: int = NUM_LABELS):
    return timm_classifier(
        "resnet18", num_labels, layers=[1, 1, 1, 1], channels=(8, 16, 24, 32), stem_width=8, zero_init_last=False
    )


def hf_convnext(num_labels: int = NUM_LABELS):
    return ConvNextForImageClassification(ConvNextConfig(**TINY_CONVNEXT, image_size=IMAGE_SIZE, num_labels=num_labels))


def hf_convnextv2(num_labels: int = NUM_LABELS):
    config = ConvNextV2Config(**TINY_CONVNEXT, image_size=IMAGE_SIZE, num_labels=num_labels)
    return ConvNextV2ForImageClassification(config)


def timm_convnext(num_labels: int = NUM_LABELS):
    return timm_classifier("convnext_atto", num_labels, dims=(8, 16, 24, 32), depths=(1, 1, 2, 1), ls_init_value=1.0)


def timm_convnext_ols(num_labels: int = NUM_LABELS):
    """The *_ols variants' overlapping stem: two padded 3x3/2 convolutions, which round up."""
    return timm_classifier(
        "convnext_atto_ols", num_labels, dims=(8, 16, 24, 32), depths=(1, 1, 2, 1), ls_init_value=1.0
    )


def hf_mobilenetv2(num_labels: int = NUM_LABELS):
    """All 16 blocks (transformers fixes the depth) at a quarter width; a 320-wide final conv."""
    config = MobileNetV2Config(
        depth_multiplier=0.25, finegrained_output=False, image_size=IMAGE_SIZE, num_labels=num_labels
    )
    return MobileNetV2ForImageClassification(config)


def timm_mobilenetv2(num_labels: int = NUM_LABELS):
    """One block per stack; mobilenetv2_035 is the narrowest entry point (it fixes the width)."""
    return timm_classifier("mobilenetv2_035", num_labels, depth_multiplier=0.1)


def hf_mobilenetv1(num_labels: int = NUM_LABELS):
    """All 13 separable layers (transformers fixes the depth) at a quarter width."""
    config = MobileNetV1Config(depth_multiplier=0.25, image_size=IMAGE_SIZE, num_labels=num_labels)
    return MobileNetV1ForImageClassification(config)


def timm_mobilenetv3(num_labels: int = NUM_LABELS):
    """Its last stack is a 1x1 conv block; the head pools before its own 1x1 conv."""
    return timm_classifier("mobilenetv3_small_050", num_labels)


def hf_efficientnet(num_labels: int = NUM_LABELS):
    """One block per stack (7) at a quarter width; block 3 (stride 2, a 3x3 depthwise conv) pads
    symmetrically, as the blocks B6/B7 list in depthwise_padding, so its odd sizes round up."""
    config = EfficientNetConfig(
        width_coefficient=0.25, depth_coefficient=0.1, hidden_dim=320, depthwise_padding=[3], image_size=IMAGE_SIZE,
        num_labels=num_labels,
    )
    return EfficientNetForImageClassification(config)


def hf_regnet(num_labels: int = NUM_LABELS):
    """RegNetY: grouped 3x3 convolutions with squeeze-and-excitation."""
    config = RegNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], groups_width=8, layer_type="y",
        num_labels=num_labels,
    )
    return RegNetForImageClassification(config)


def timm_regnet(num_labels: int = NUM_LABELS):
    """A 4-block RegNetX whose widths 8, 16, 32, 64 make one block per stage."""
    return timm_classifier(
        "regnetx_002", num_labels, w0=8, wa=13.0, wm=2.0, depth=4, group_size=8, stem_width=8, zero_init_last=False
    )


# CNN families (ResNet, RegNet, MobileNetV1/V2/V3, EfficientNet, ConvNeXt; transformers and timm).
CNN_MODELS = {
    "hf-resnet": ("cnn", hf_resnet),
    "timm-resnet": ("cnn", timm_resnet),
    "hf-convnext": ("cnn", hf_convnext),
    "hf-convnextv2": ("cnn", hf_convnextv2),
    "timm-convnext": ("cnn", timm_convnext),
    "timm-convnext-ols": ("cnn", timm_convnext_ols),
    "hf-mobilenetv2": ("cnn", hf_mobilenetv2),
    "timm-mobilenetv2": ("cnn", timm_mobilenetv2),
    "hf-regnet": ("cnn", hf_regnet),
    "timm-regnet": ("cnn", timm_regnet),
    "hf-efficientnet": ("cnn", hf_efficientnet),
    "hf-mobilenetv1": ("cnn", hf_mobilenetv1),
    "timm-mobilenetv3": ("cnn", timm_mobilenetv3),
}

# ViT/DeiT: 4x4 patches give an 8x8 grid; 5 blocks (ViT) split unevenly 1/1/1/2, 4 (DeiT) evenly.
TINY_VIT = dict(image_size=IMAGE_SIZE, patch_size=4, hidden_size=32, num_attention_heads=2, intermediate_size=64)
TIMM_TINY_VIT = dict(img_size=IMAGE_SIZE, patch_size=4, embed_dim=32, depth=5, num_heads=2)
# Swin: 2x2 patches give grids 16/8/4/2, all divisible by the 2x2 window; depth 2 adds shifted windows.
TINY_SWIN = dict(patch_size=2, embed_dim=16, depths=(2, 2, 2, 1), num_heads=(1, 2, 2, 4), window_size=2)


def hf_vit(num_labels: int = NUM_LABELS):
    return ViTForImageClassification(ViTConfig(**TINY_VIT, num_hidden_layers=5, num_labels=num_labels))


def hf_deit(num_labels: int = NUM_LABELS):
    return DeiTForImageClassification(DeiTConfig(**TINY_VIT, num_hidden_layers=4, num_labels=num_labels))


def hf_deit_distilled(num_labels: int = NUM_LABELS):
    config = DeiTConfig(**TINY_VIT, num_hidden_layers=4, num_labels=num_labels)
    return DeiTForImageClassificationWithTeacher(config)


def hf_swin(num_labels: int = NUM_LABELS):
    return SwinForImageClassification(SwinConfig(image_size=IMAGE_SIZE, **TINY_SWIN, num_labels=num_labels))


def timm_vit(num_labels: int = NUM_LABELS):
    return timm_classifier("vit_tiny_patch16_224", num_labels, **TIMM_TINY_VIT)


def timm_vit_reg_avg(num_labels: int = NUM_LABELS):
    """Register tokens and no class token: prefix handling and average pooling stay timm's."""
    args = dict(TIMM_TINY_VIT, class_token=False, reg_tokens=2, global_pool="avg")
    return timm_classifier("vit_tiny_patch16_224", num_labels, **args)


def timm_deit_distilled(num_labels: int = NUM_LABELS):
    return timm_classifier("deit_tiny_distilled_patch16_224", num_labels, **dict(TIMM_TINY_VIT, depth=4))


def timm_swin(num_labels: int = NUM_LABELS):
    return timm_classifier("swin_tiny_patch4_window7_224", num_labels, img_size=IMAGE_SIZE, **TINY_SWIN)


def random_relative_position_biases(model):
    """transformers zero-initialises the relative position bias tables; a trained one is not zero, and
    a bias built for the wrong grid (or skipped) would not show in the logits."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                parameter.normal_()
    return model


def hf_beit(num_labels: int = NUM_LABELS):
    """A relative position bias in every layer, patch-token mean pooling (the BEiT checkpoints')."""
    config = BeitConfig(
        **TINY_VIT, num_hidden_layers=5, use_relative_position_bias=True, use_mean_pooling=True,
        layer_scale_init_value=1.0, num_labels=num_labels,
    )
    return random_relative_position_biases(BeitForImageClassification(config))


def hf_data2vec_vision(num_labels: int = NUM_LABELS):
    """BEiT's other options: one shared relative position bias, an absolute position embedding,
    class-token pooling."""
    config = Data2VecVisionConfig(
        **TINY_VIT, num_hidden_layers=4, use_shared_relative_position_bias=True, use_absolute_position_embeddings=True,
        use_mean_pooling=False, layer_scale_init_value=1.0, num_labels=num_labels,
    )
    return random_relative_position_biases(Data2VecVisionForImageClassification(config))


TINY_DINOV2 = dict(image_size=IMAGE_SIZE, patch_size=4, hidden_size=32, num_attention_heads=2, mlp_ratio=2)


def hf_dinov2(num_labels: int = NUM_LABELS):
    return Dinov2ForImageClassification(Dinov2Config(**TINY_DINOV2, num_hidden_layers=5, num_labels=num_labels))


def hf_dinov2_registers(num_labels: int = NUM_LABELS):
    config = Dinov2WithRegistersConfig(**TINY_DINOV2, num_hidden_layers=4, num_register_tokens=2, num_labels=num_labels)
    return Dinov2WithRegistersForImageClassification(config)


# timm's Mixer/ResMLP entry points fix patch size, width and depth (passing them again is an
# error), so these two are bare timm models, which also covers adapters given an unwrapped model.
TINY_MIXER = dict(img_size=IMAGE_SIZE, patch_size=4, embed_dim=32)


def timm_mixer(num_labels: int = NUM_LABELS):
    return MlpMixer(num_classes=num_labels, num_blocks=5, **TINY_MIXER)


def timm_resmlp(num_labels: int = NUM_LABELS):
    resmlp = dict(block_layer=ResBlock, norm_layer=Affine, mlp_ratio=4)  # as timm's resmlp_* entry points
    return MlpMixer(num_classes=num_labels, num_blocks=4, **resmlp, **TINY_MIXER)


# Attention and MLP families (ViT, DeiT, BEiT, DINOv2, Swin; MLP-Mixer, ResMLP; transformers and timm).
TOKEN_MODELS = {
    "hf-vit": ("attention", hf_vit),
    "hf-deit": ("attention", hf_deit),
    "hf-deit-distilled": ("attention", hf_deit_distilled),
    "hf-swin": ("attention", hf_swin),
    "timm-vit": ("attention", timm_vit),
    "timm-vit-reg-avg": ("attention", timm_vit_reg_avg),
    "timm-deit-distilled": ("attention", timm_deit_distilled),
    "timm-swin": ("attention", timm_swin),
    "timm-mixer": ("mlp", timm_mixer),
    "timm-resmlp": ("mlp", timm_resmlp),
    "hf-beit": ("attention", hf_beit),
    "hf-data2vec-vision": ("attention", hf_data2vec_vision),
    "hf-dinov2": ("attention", hf_dinov2),
    "hf-dinov2-registers": ("attention", hf_dinov2_registers),
}

TINY_MODELS = {**CNN_MODELS, **TOKEN_MODELS}


def build(name: str, num_labels: int = NUM_LABELS, seed: int = 0):
    """The tiny model ``name`` in eval mode, with weights fixed by ``seed``."""
    torch.manual_seed(seed)
    family, builder = TINY_MODELS[name]
    return builder(num_labels).eval()
