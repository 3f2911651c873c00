import pytest
import torch
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

from hf_cakd.backbones import (
    StagedBackbone,
    UnsupportedArchitectureError,
    register_adapter,
    staged_view,
    supported_architectures,
)
from hf_cakd.backbones.base import ofa_split_sizes, resplit
from hf_cakd.backbones.registry import _ADAPTERS, find_adapter
from hf_cakd.errors import InputError, UsageError
from tiny_models import CNN_MODELS, IMAGE_SIZE, NUM_LABELS, TINY_MODELS, TINY_VIT, build


def test_every_registered_adapter_has_a_tiny_model():
    """As timm tests every listed model: an adapter without a tiny model (tests/tiny_models.py) fails here."""
    shipped = {adapter for adapter in _ADAPTERS.values() if adapter.__module__.startswith("hf_cakd.")}
    covered = {find_adapter(build(name)) for name in TINY_MODELS}
    missing = sorted(f"{adapter.__module__}.{adapter.__name__}" for adapter in shipped - covered)
    assert not missing, f"adapters without a tiny model in tests/tiny_models.py: {missing}"


def model_logits(model, pixel_values):
    out = model(pixel_values)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_staged_forward_matches_model_forward(name):
    family, _ = TINY_MODELS[name]
    model = build(name)
    view = staged_view(model, image_size=IMAGE_SIZE)
    assert view.family == family
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        expected = model_logits(model, pixel_values)
        hidden = view.stem(pixel_values)
        for stage, info in zip(view.stages, view.stage_infos):
            hidden = stage(hidden)
            if info.layout == "map":
                assert hidden.shape == (2, info.channels, *info.grid), (name, info)
            else:
                tokens = info.num_prefix_tokens + info.grid[0] * info.grid[1]
                assert hidden.shape == (2, tokens, info.channels), (name, info)
        logits = view.head(hidden)
    assert logits.shape == (2, NUM_LABELS)
    assert (logits - expected).abs().max() < 1e-5


@pytest.mark.parametrize("size", [38, 46])  # not multiples of a stem's 4 or a stage's 2: each rounding shows
@pytest.mark.parametrize("name", sorted(CNN_MODELS))
def test_cnn_stage_grids_are_what_the_stages_output_at_any_size(name, size):
    view = staged_view(build(name), image_size=size)
    with torch.no_grad():
        features = view(torch.randn(1, 3, size, size)).features
    assert [tuple(feature.shape[2:]) for feature in features] == [info.grid for info in view.stage_infos]


def test_a_model_of_three_stages_is_an_unsupported_architecture():
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 1, 1], layer_type="basic")
    with pytest.raises(UnsupportedArchitectureError, match="ResNetForImageClassification has 3") as err:
        staged_view(ResNetForImageClassification(config))
    assert isinstance(err.value, InputError)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_stages_are_the_models_own_modules(name):
    model = build(name)
    view = staged_view(model, image_size=IMAGE_SIZE)
    model_params = {id(p) for p in model.parameters()}
    view_params = [id(p) for p in view.parameters()]
    assert view_params and set(view_params) <= model_params
    assert len(set(view_params)) == len(model_params), "every parameter sits in the stem, a stage or the head"


def test_unsupported_model_error_names_supported_and_how_to_register():
    class Mystery(nn.Module):
        pass

    with pytest.raises(UnsupportedArchitectureError) as err:
        staged_view(Mystery())
    message = str(err.value)
    assert "Mystery" in message and "register_adapter" in message
    assert "transformers:ResNetForImageClassification" in message


def test_register_adapter_extends_the_registry():
    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleList(nn.Identity() for _ in range(4))

    @register_adapter(TinyNet)
    def staged_tinynet(model, image_size=None):
        from hf_cakd.backbones import StageInfo

        infos = [StageInfo("map", 3, (4, 4))] * 4
        return StagedBackbone(model, "cnn", nn.Identity(), list(model.body), nn.Flatten(), infos, (4, 4))

    assert "test_backbones:TinyNet" in supported_architectures()
    view = staged_view(TinyNet())
    assert view.forward(torch.ones(1, 3, 4, 4)).logits.shape == (1, 48)


@pytest.mark.parametrize("name", ["hf-vit", "timm-deit-distilled", "timm-swin", "timm-mixer"])
def test_fixed_grid_model_rejects_another_image_size(name):
    # A UsageError (the CLI prints one line and exits with 2) and, as before, a ValueError.
    with pytest.raises(UsageError, match=rf"configured image size {IMAGE_SIZE}x{IMAGE_SIZE}.*64x64 was requested") as info:
        staged_view(build(name), image_size=64)
    assert isinstance(info.value, ValueError)


def test_hf_swin_stage_infos_follow_the_requested_image_size():
    # transformers' Swin pads to its windows, so it runs at sizes other than its config's.
    model = build("hf-swin")
    view = staged_view(model, image_size=48)
    pixel_values = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        out = view(pixel_values)
        expected = model_logits(model, pixel_values)
    assert [info.grid for info in view.stage_infos] == [(24, 24), (12, 12), (6, 6), (3, 3)]
    assert [feature.shape[1] for feature in out.features] == [24 * 24, 12 * 12, 6 * 6, 3 * 3]
    assert (out.logits - expected).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["hf-beit", "hf-data2vec-vision", "hf-dinov2", "hf-dinov2-registers"])
def test_resampling_token_models_follow_the_requested_image_size(name):
    # Their embeddings resample the position embedding, and BEiT's layers their relative position
    # biases, to the input's patch grid: the view must pass the layers that grid.
    model = build(name)
    view = staged_view(model, image_size=48)
    pixel_values = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        out = view(pixel_values)
        expected = model_logits(model, pixel_values)
    assert [info.grid for info in view.stage_infos] == [(12, 12)] * 4
    assert out.features[3].shape[1] == view.stage_infos[3].num_prefix_tokens + 12 * 12
    assert (out.logits - expected).abs().max() < 1e-5


# ---- pre-logits: what the classifier reads ----


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_pre_logits_through_the_classifier_give_the_logits(name):
    from hf_cakd.backbones.heads import classify_pre_logits, head_classifiers

    view = staged_view(build(name), image_size=IMAGE_SIZE)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        plain = view(pixel_values)
        assert plain.pre_logits is None  # captured only on request
        view.capture_pre_logits = True
        out = view(pixel_values)
        classifiers = head_classifiers(view.head, out.features[3])
    assert torch.equal(out.logits, plain.logits)
    assert out.pre_logits.shape == (2, view.pre_logits_dim())
    assert all(isinstance(linear, nn.Linear) and linear.out_features == NUM_LABELS for linear in classifiers)
    assert len(classifiers) == (2 if "distilled" in name else 1)  # DeiT averages two classifiers
    with torch.no_grad():
        torch.testing.assert_close(classify_pre_logits(classifiers, out.pre_logits), out.logits, atol=1e-5, rtol=1e-5)


def test_pre_logits_look_through_the_heads_dropout_and_carry_gradients():
    model = build("hf-mobilenetv2").train()  # head: conv, pool, flatten, in-place Dropout(0.8), classifier
    view = staged_view(model, image_size=IMAGE_SIZE)
    view.capture_pre_logits = True
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.manual_seed(0)
    first = view(pixel_values)
    torch.manual_seed(1)
    second = view(pixel_values)
    assert model.dropout.p > 0 and model.dropout.inplace
    assert not torch.equal(first.logits, second.logits)  # two dropout masks ...
    torch.testing.assert_close(first.pre_logits, second.pre_logits)  # ... read the same pre-dropout vector
    assert not torch.allclose(model.classifier(first.pre_logits), first.logits)
    first.pre_logits.sum().backward()
    assert model.mobilenet_v2.conv_1x1.convolution.weight.grad.abs().sum() > 0


def test_an_isotropic_model_with_fewer_blocks_than_stages_is_an_input_error():
    model = ViTForImageClassification(ViTConfig(**TINY_VIT, num_hidden_layers=3, num_labels=NUM_LABELS))
    with pytest.raises(InputError, match=r"needs at least 4 blocks .* this one has 3\. Give it at least 4 blocks"):
        staged_view(model)


def test_ofa_split_sizes_follow_ofa_kds_boundaries():
    assert ofa_split_sizes(12) == [2, 2, 6, 2]  # after blocks 1, 3, 9, 11
    assert ofa_split_sizes(6) == [1, 1, 3, 1]
    assert ofa_split_sizes(4) == [1, 1, 1, 1]
    assert all(sum(ofa_split_sizes(n)) == n and min(ofa_split_sizes(n)) >= 1 for n in range(4, 40))


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_resplit_regroups_isotropic_blocks_and_keeps_the_logits(name):
    view = staged_view(build(name), image_size=IMAGE_SIZE)
    regrouped = resplit(view, "ofa")
    isotropic = len(set(view.stage_infos)) == 1
    assert (regrouped is not view) == isotropic  # hierarchical models keep their resolution stages
    if isotropic:
        blocks = sum(len(stage) for stage in view.stages)
        assert [len(stage) for stage in regrouped.stages] == ofa_split_sizes(blocks)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        assert torch.equal(regrouped(pixel_values).logits, view(pixel_values).logits)


@pytest.mark.parametrize("model_classes", [(), ("ViTForImageClassification",), (lambda model, image_size=None: None,)])
def test_register_adapter_takes_model_classes(model_classes):
    """``@register_adapter`` without its classes, or a class name, would register nothing and hide the adapter."""
    before = dict(_ADAPTERS)
    with pytest.raises(TypeError, match="register_adapter takes the model classes"):
        register_adapter(*model_classes)
    assert _ADAPTERS == before
