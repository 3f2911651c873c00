"""Reliability: numerical faults stop training cleanly, odd images and wrong columns are handled,
and properties of the staged views, the bridge and the losses hold for random configurations.

The property-based tests draw a handful of tiny configurations each (hypothesis), so the file
runs in well under a minute on a CPU.
"""

from __future__ import annotations

import math

import PIL.Image
import pytest
import torch
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForImageClassification, BitImageProcessor, ResNetConfig, ResNetForImageClassification
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

import hf_cakd.methods.kd
from hf_cakd.assistant.bridge import FusionBridge
from hf_cakd.backbones import StageInfo, staged_view
from hf_cakd.data import DataError, DistillationTransform, LabelColumnError, UndecodableImageError
from hf_cakd.data import image_transforms, load_image_dataset
from hf_cakd.losses import info_nce, kd_loss, ofa_loss
from hf_cakd.training.checkpointing import CHECKPOINT_COMPLETE_NAME
from test_trainer import ImageBatches, make_trainer, training_logs

PROPERTY = settings(max_examples=12, deadline=None, derandomize=True)

# ---- 1. numerical faults ----


def test_nan_inputs_stop_training_naming_the_loss_term(tmp_path):
    trainer = make_trainer(tmp_path, "kd")
    batch = ImageBatches(4).batch(range(4))
    batch["pixel_values"][0, 0, 0, 0] = float("nan")
    trainer.model.train()
    with pytest.raises(FloatingPointError, match=r"loss term 'ce' is nan at step 0.*checkpoint is untouched"):
        trainer.compute_loss(trainer.model, batch)


def test_inf_loss_keeps_the_last_checkpoint_which_resumes_to_the_end(tmp_path, monkeypatch):
    calls = []

    def kd_loss_failing_at_the_third_step(*args, **kwargs):
        calls.append(1)
        loss = kd_loss(*args, **kwargs)
        return loss + math.inf if len(calls) == 3 else loss

    monkeypatch.setattr(hf_cakd.methods.kd, "kd_loss", kd_loss_failing_at_the_third_step)
    run = dict(max_steps=4, save_strategy="steps", save_steps=2)
    faulty = make_trainer(tmp_path, "kd", **run)
    with pytest.raises(FloatingPointError, match=r"loss term 'kd' is inf at step 2"):
        faulty.train()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]  # no checkpoint after the fault
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / CHECKPOINT_COMPLETE_NAME).read_text() == "step 2\n"
    # The failed step raised before its optimizer step: the live student is still the saved one.
    saved = AutoModelForImageClassification.from_pretrained(checkpoint).state_dict()
    live = faulty.student.state_dict()
    assert saved.keys() == live.keys()
    assert all(torch.equal(saved[name], live[name]) and torch.isfinite(saved[name]).all() for name in saved)

    monkeypatch.undo()  # the fault is removed
    resumed = make_trainer(tmp_path, "kd", student_seed=7, **run)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    # Steps 1-2 come back from the checkpoint's trainer state; the failed step 3 was never logged.
    assert [entry["step"] for entry in training_logs(resumed)] == [1, 2, 3, 4]
    assert all(math.isfinite(entry["loss"]) for entry in training_logs(resumed))
    assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])  # both are accepted with use_cpu (CPU autocast)
@pytest.mark.parametrize("method", ["kd", "fbt"])
def test_mixed_precision_on_cpu_gives_finite_losses_and_gradients(tmp_path, method, precision):
    trainer = make_trainer(tmp_path, method, max_steps=2, **{precision: True})
    assert trainer.accelerator.mixed_precision == precision
    trainer.train()
    logs = training_logs(trainer)
    assert len(logs) == 2
    assert all(math.isfinite(entry["grad_norm"]) for entry in logs)
    assert all(math.isfinite(value) for entry in logs for key, value in entry.items() if key.startswith("loss"))


# ---- 2. images of any size and mode; wrong column types ----

VIT_PROCESSOR = ViTImageProcessor(size=32, image_mean=[0.5] * 3, image_std=[0.5] * 3)
IMAGENET_PROCESSOR = BitImageProcessor(size={"shortest_edge": 56}, crop_size=48)


@pytest.mark.parametrize("size", [(8, 8), (2000, 1500), (1, 300)])
@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK"])
def test_tiny_and_huge_images_of_any_mode_reach_the_model_shape(size, mode):
    image = PIL.Image.new("RGB", size, (200, 100, 50)).convert(mode)
    for train in (False, True):
        for processor, side in ((VIT_PROCESSOR, 32), (IMAGENET_PROCESSOR, 48)):
            pixels = image_transforms(None, processor, train=train)(image)
            assert pixels.shape == (3, side, side) and torch.isfinite(pixels).all()


def test_image_column_of_strings_is_read_as_paths_and_a_bad_one_names_the_column():
    data = load_image_dataset(Dataset.from_dict({"image": ["missing.png", "x.jpg"], "label": [0, 1]}))
    transform = DistillationTransform(
        image_transforms(None, VIT_PROCESSOR, train=False), image_column="image", label_column="label"
    )
    with pytest.raises(UndecodableImageError, match=r"Row 0: the image in column 'image' cannot be decoded"):
        transform.apply_to(data.train)[0]


@pytest.mark.parametrize("values", [[1, 2], [0.5, 1.5], [True, False]])
def test_numeric_image_column_is_refused_naming_the_column(values):
    with pytest.raises(DataError, match=r"image column 'image' holds (int64|float64|bool) values"):
        load_image_dataset(Dataset.from_dict({"image": values, "label": [0, 1]}))


def test_float_labels_are_refused_naming_the_column():  # class names are encoded: see test_data.py
    with pytest.raises(LabelColumnError, match=r"label column 'label' holds float64 values"):
        load_image_dataset(Dataset.from_dict({"image": [b"x", b"y"], "label": [0.0, 1.0]}))


# ---- 3. properties over random configurations ----


def assert_stages_match(view, model, image_size: int):
    pixel_values = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        expected = model(pixel_values).logits
        output = view(pixel_values)
    for feature, info in zip(output.features, view.stage_infos):
        if info.layout == "map":
            assert feature.shape == (2, info.channels, *info.grid), info
        else:
            assert feature.shape == (2, info.num_prefix_tokens + info.grid[0] * info.grid[1], info.channels), info
    torch.testing.assert_close(output.logits, expected, atol=1e-5, rtol=1e-5)


@PROPERTY
@given(
    heads=st.integers(1, 4),
    head_dim=st.sampled_from([4, 8]),
    layers=st.integers(4, 7),
    image_and_patch=st.sampled_from([(16, 2), (16, 4), (24, 4), (24, 8), (32, 4), (32, 8)]),
)
def test_staged_vit_matches_the_model_for_random_configs(heads, head_dim, layers, image_and_patch):
    image_size, patch_size = image_and_patch
    config = ViTConfig(
        image_size=image_size, patch_size=patch_size, hidden_size=heads * head_dim, num_attention_heads=heads,
        intermediate_size=2 * heads * head_dim, num_hidden_layers=layers, num_labels=5,
    )
    model = ViTForImageClassification(config).eval()
    view = staged_view(model, image_size=image_size)
    assert all(info.grid == (image_size // patch_size,) * 2 for info in view.stage_infos)
    assert sum(len(stage) for stage in view.stages) == layers
    assert_stages_match(view, model, image_size)


@PROPERTY
@given(
    widths=st.lists(st.integers(1, 4).map(lambda w: 4 * w), min_size=4, max_size=4),
    depths=st.lists(st.integers(1, 2), min_size=4, max_size=4),
    layer_type=st.sampled_from(["basic", "bottleneck"]),
    downsample_first=st.booleans(),
    image_size=st.sampled_from([32, 48, 64]),
)
def test_staged_resnet_matches_the_model_for_random_configs(widths, depths, layer_type, downsample_first, image_size):
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=widths, depths=depths, layer_type=layer_type,
        downsample_in_first_stage=downsample_first, num_labels=5,
    )
    model = ResNetForImageClassification(config).eval()
    assert_stages_match(staged_view(model, image_size=image_size), model, image_size)


@st.composite
def stage_infos(draw):
    layout = draw(st.sampled_from(["map", "tokens"]))
    prefix = draw(st.integers(0, 2)) if layout == "tokens" else 0
    grid = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    return StageInfo(layout, draw(st.integers(4, 32)), grid, prefix)


def random_feature(info: StageInfo, batch: int) -> torch.Tensor:
    if info.layout == "map":
        return torch.randn(batch, info.channels, *info.grid)
    return torch.randn(batch, info.num_prefix_tokens + info.grid[0] * info.grid[1], info.channels)


@PROPERTY
@given(source=stage_infos(), target=stage_infos(), bridge_type=st.sampled_from(["attention", "linear"]))
def test_bridge_gives_the_target_layout_with_gradients_everywhere(source, target, bridge_type):
    bridge = FusionBridge(source, target, bridge_type)
    source_feature = random_feature(source, batch=2).requires_grad_()
    out = bridge(source_feature)
    assert out.shape == random_feature(target, batch=2).shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for name, parameter in bridge.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(source_feature.grad).all()


logit_scales = st.sampled_from([1e-3, 1.0, 30.0, 1e3])


def random_logits(seed: int, scale: float, shape=(6, 7)) -> torch.Tensor:
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale).requires_grad_()


def assert_finite_with_finite_gradients(loss, *inputs):
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    loss.backward()
    for tensor in inputs:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()


@PROPERTY
@given(seed=st.integers(0, 2**16), scale=logit_scales, temperature=st.floats(0.5, 8.0))
def test_kd_loss_is_finite_non_negative_with_finite_gradients(seed, scale, temperature):
    student, teacher = random_logits(seed, scale), random_logits(seed + 1, scale)
    loss = kd_loss(student, teacher, temperature)
    assert loss >= -1e-4 * max(1.0, scale)  # a KL divergence, up to float32 rounding
    assert_finite_with_finite_gradients(loss, student, teacher)
    assert kd_loss(teacher, teacher, temperature).abs() <= 1e-4 * max(1.0, scale)


@PROPERTY
@given(
    seed=st.integers(0, 2**16), scale=logit_scales, gamma=st.floats(1.0, 3.0),
    temperature=st.floats(0.5, 4.0), soft_labels=st.booleans(),
)
def test_ofa_loss_is_finite_non_negative_with_finite_gradients(seed, scale, gamma, temperature, soft_labels):
    student, teacher = random_logits(seed, scale), random_logits(seed + 1, scale)
    labels = torch.randint(0, 7, (6,), generator=torch.Generator().manual_seed(seed))
    if soft_labels:  # label smoothing / mixup targets
        labels = torch.nn.functional.one_hot(labels, 7).float() * 0.9 + 0.1 / 7
    loss = ofa_loss(student, teacher, labels, gamma=gamma, temperature=temperature)
    assert loss >= 0
    assert_finite_with_finite_gradients(loss, student, teacher)


@PROPERTY
@given(
    seed=st.integers(0, 2**16), scale=logit_scales, batch=st.integers(1, 8),
    temperature=st.floats(0.01, 1.0), zero_row=st.booleans(),
)
def test_info_nce_is_finite_non_negative_with_finite_gradients(seed, scale, batch, temperature, zero_row):
    z_x, z_y = random_logits(seed, scale, (batch, 5)), random_logits(seed + 1, scale, (batch, 5))
    if zero_row:  # a dead feature: all-zero embedding
        z_x = z_x.detach().index_fill(0, torch.tensor([0]), 0.0).requires_grad_()
    tau = torch.tensor(temperature, requires_grad=True)
    loss = info_nce(z_x, z_y, tau, gather_across_processes=False)
    assert loss >= 0
    # Bounded by the all-negatives-win case: 2 / tau above log(batch).
    assert loss <= math.log(batch) + 2 / temperature + 1e-3
    assert_finite_with_finite_gradients(loss, z_x, z_y, tau)
