"""The recipe's augmentation (hf_cakd.data.augment): timm's policy, colour jitter, random erasing and Mixup/CutMix,
seen identically by teacher and student, and the supervised terms on the mixed targets."""

from __future__ import annotations

import random

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from transformers import ViTImageProcessor

from hf_cakd.cli import parse_distill_args
from hf_cakd.data import IMAGES_KEY, DeviceViews, DistillationTransform
from hf_cakd.data.augment import Augmentation, _cpu_augmentation
from hf_cakd.errors import UsageError
from hf_cakd.methods import method_class, method_config
from test_device_views import BICUBIC, BILINEAR, cifar_images, in_pixels, photos, spec
from tiny_models import build

NUM_CLASSES = 10
EVERYTHING = dict(
    auto_augment="rand-m9-mstd0.5-inc1", color_jitter=0.4, random_erasing=1.0, mixup_alpha=0.8, cutmix_alpha=1.0,
    label_smoothing=0.1, num_classes=NUM_CLASSES,
)  # fmt: skip
# (images, student, teacher): the student and teacher at one size with other interpolations and statistics,
# a smaller student, a larger teacher, and tiny images whose CPU view stays at 32 px.
PAIRS = {
    "photos, 224 px both": (photos, spec(224, BICUBIC, True), spec(224, BILINEAR)),
    "photos, 160 px student <- 224 px teacher": (photos, spec(160, BICUBIC, True), spec(224, BILINEAR)),
    "photos, 224 px student <- 288 px teacher": (photos, spec(224, BILINEAR), spec(288, BICUBIC, True)),
    "CIFAR, 64 px student <- 32 px teacher": (cifar_images, spec(64, BICUBIC), spec(32, BILINEAR, True)),
}


def augmented_batch(images, views: DeviceViews, seed: int, labels=None) -> dict:
    """One training batch as the loader and the trainer make it: the CPU views stacked, then the device views."""
    torch.manual_seed(seed)
    random.seed(seed)  # timm's policies and erasing draw from Python's RNG, Mixup from numpy's
    np.random.seed(seed)
    uint8 = torch.stack([views.cpu_transform()(image) for image in images])
    labels = torch.arange(len(images)) % NUM_CLASSES if labels is None else labels
    return views({IMAGES_KEY: uint8, "labels": labels})


@pytest.mark.parametrize("pair", PAIRS)
def test_with_every_augmentation_on_the_two_views_are_one_image(pair):
    """The view at the CPU image's size, resized and normalised as the other model's, is the other view."""
    images, student, teacher = PAIRS[pair]
    views = DeviceViews(student, teacher, Augmentation(**EVERYTHING))
    plain = DeviceViews(student, teacher)
    cpu_size = tuple(views.cpu_transform()(images()[0]).shape[-2:])
    (source_key, source), (other_key, other) = sorted(
        [("pixel_values", student), ("teacher_pixel_values", teacher)], key=lambda view: view[1].size != cpu_size
    )
    for seed in range(3):
        batch = augmented_batch(images()[:4], views, seed)
        mapped = in_pixels(batch[source_key], source)
        if source.size != other.size:
            mapped = TF.resize(mapped, list(other.size), interpolation=other.interpolation, antialias=True)
            mapped = mapped.clamp(0, 1) if other.interpolation == BICUBIC else mapped
        torch.testing.assert_close(mapped, in_pixels(batch[other_key], other), atol=1e-5, rtol=0)
        assert batch["labels"].shape == (4, NUM_CLASSES)
        torch.testing.assert_close(batch["labels"].sum(-1), torch.ones(4))
        unaugmented = augmented_batch(images()[:4], plain, seed)["pixel_values"]
        assert (in_pixels(batch["pixel_values"], student) - in_pixels(unaugmented, student)).abs().mean() > 0.02


def distinct_images(count: int = 4, side: int = 8) -> torch.Tensor:
    """Image i filled with the value (i + 1) / 10, so every pixel tells which image it came from."""
    return torch.stack([torch.full((3, side, side), (i + 1) / 10) for i in range(count)])


def mixed(augmentation: Augmentation, images: torch.Tensor, labels: torch.Tensor, seed: int = 0):
    np.random.seed(seed)
    return augmentation.augment_batch(images.clone(), labels, (0.5,) * 3, (0.5,) * 3)


def test_cutmix_pastes_one_box_from_the_reversed_batch_and_mixes_the_targets_by_its_area():
    labels = torch.tensor([0, 1, 2, 3])
    cutmix = Augmentation(cutmix_alpha=1.0, num_classes=NUM_CLASSES)
    for seed in range(5):
        images, targets = mixed(cutmix, distinct_images(), labels, seed)
        for i in range(4):
            j = 3 - i  # timm's batch mode mixes image i with image B-1-i
            pasted = (images[i] == (j + 1) / 10).all(0).float().mean().item()
            own = (images[i] == (i + 1) / 10).all(0).float().mean().item()
            assert own + pasted == pytest.approx(1.0)  # every pixel is its own or the partner's: no blending
            expected = (1 - pasted) * F.one_hot(labels[i], NUM_CLASSES) + pasted * F.one_hot(labels[j], NUM_CLASSES)
            torch.testing.assert_close(targets[i], expected.float())
        # one box for the batch: the same pixels were pasted in every image
        boxes = [(images[i] != (i + 1) / 10).all(0) for i in range(4)]
        assert all(torch.equal(box, boxes[0]) for box in boxes)


def test_mixup_blends_each_image_with_its_partner_by_the_targets_ratio():
    labels = torch.tensor([4, 5, 6, 7])
    mixup = Augmentation(mixup_alpha=0.8, num_classes=NUM_CLASSES, label_smoothing=0.0)
    images, targets = mixed(mixup, distinct_images(), labels, seed=3)
    lam = targets[0, 4].item()
    assert 0 < lam < 1
    for i in range(4):
        expected = lam * (i + 1) / 10 + (1 - lam) * (4 - i) / 10
        torch.testing.assert_close(images[i], torch.full_like(images[i], expected))
        assert targets[i, labels[i]].item() == pytest.approx(lam) and targets[i, labels[3 - i]].item() == pytest.approx(1 - lam)


def test_mixup_prob_and_switch_prob_follow_timm():
    labels = torch.tensor([0, 1, 2, 3])
    never = Augmentation(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=0.0, label_smoothing=0.1, num_classes=NUM_CLASSES)
    images, targets = mixed(never, distinct_images(), labels)
    assert torch.equal(images, distinct_images())
    smoothed = torch.full((4, NUM_CLASSES), 0.1 / NUM_CLASSES)
    smoothed[torch.arange(4), labels] = 1 - 0.1 + 0.1 / NUM_CLASSES
    torch.testing.assert_close(targets, smoothed)
    for switch_prob, blended in ((1.0, False), (0.0, True)):
        both = Augmentation(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=switch_prob, num_classes=NUM_CLASSES)
        for seed in range(4):
            images, _ = mixed(both, distinct_images(), labels, seed)
            pure = torch.stack([(images[i] == (i + 1) / 10) | (images[i] == (4 - i) / 10) for i in range(4)]).all()
            assert bool(pure) != blended  # CutMix pastes pixels, Mixup blends them


def test_an_odd_batchs_last_image_stays_unmixed():
    labels = torch.tensor([0, 1, 2, 3, 4])
    images, targets = mixed(Augmentation(mixup_alpha=0.8, num_classes=NUM_CLASSES), distinct_images(5), labels, seed=1)
    assert torch.equal(images[4], distinct_images(5)[4])
    torch.testing.assert_close(targets[4], F.one_hot(torch.tensor(4), NUM_CLASSES).float())
    assert not torch.equal(images[0], distinct_images(5)[0])


def test_random_erasing_replaces_one_box_with_noise_within_the_image_range():
    images = distinct_images(4, side=32)
    erased, labels = mixed(Augmentation(random_erasing=1.0), images, torch.arange(4))
    assert torch.equal(labels, torch.arange(4))  # no mixing: the labels stay class indices
    for before, after in zip(images, erased):
        changed = (after != before).any(0)
        rows, columns = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        assert 0.02 * 32 * 32 / 2 < changed.sum() <= (rows.numel() * columns.numel())  # one box, its pixels noise
        assert after.min() >= 0 and after.max() <= 1
    untouched, _ = mixed(Augmentation(random_erasing=0.0), images, torch.arange(4))
    assert torch.equal(untouched, images)


@pytest.mark.parametrize("flags", [dict(auto_augment="rand-m9-mstd0.5-inc1"), dict(color_jitter=0.4)])
def test_the_cpu_augmentations_change_the_one_cpu_view(flags):
    augmented = DeviceViews(spec(32, BILINEAR), spec(32, BILINEAR), Augmentation(**flags)).cpu_transform()
    plain = DeviceViews(spec(32, BILINEAR), spec(32, BILINEAR)).cpu_transform()
    differences = []
    for image in cifar_images():
        torch.manual_seed(0)
        view = augmented(image)
        torch.manual_seed(0)
        differences.append((view.float() - plain(image).float()).abs().mean().item())
        assert view.dtype == torch.uint8 and view.shape == (3, 32, 32)
    assert sum(differences) / len(differences) > 3  # in 1/255 units


@pytest.mark.parametrize("policy", ["rand-m10-n1-mstd0-inc1", "v0"])
def test_posterize_at_its_strongest_keeps_one_bit_where_pillow_refuses_zero(policy):
    """timm asks for 0 bits (RandAugment's increasing posterize at magnitude 10, AutoAugment v0 at low levels);
    Pillow 12+ raises on it mid-training. The policy keeps the top bit instead: every channel value is 0 or 128."""
    transform = _cpu_augmentation(policy, None, (32, 32), (0.5, 0.5, 0.5), "bilinear")
    stage = next(stage for stage in transform.transforms if hasattr(stage, "ops") or hasattr(stage, "policy"))
    ops = getattr(stage, "ops", None) or [op for sub_policy in stage.policy for op in sub_policy]
    posterize = next(op for op in ops if op.name.startswith("Posterize") and op.level_fn(op.magnitude, op.hparams) == (1,))
    posterize.prob = 1.0
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert set(np.unique(np.asarray(posterize(image)))) == {0, 128}


def test_the_supervised_term_reads_mixed_targets_without_smoothing_them_twice():
    student = torch.randn(4, NUM_CLASSES)
    targets = torch.softmax(torch.randn(4, NUM_CLASSES), -1)
    method = method_class("none")(_Viewless(), None, method_config("none", {"ce_weight": 0.5}))
    method.label_smoothing = 0.1  # already inside the mixed targets
    expected = 0.5 * -(targets * student.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(method.supervised_loss(student, targets), expected)
    hard = torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(method.supervised_loss(student, hard), 0.5 * F.cross_entropy(student, hard, label_smoothing=0.1))


class _Viewless:
    """The ``none`` method reads no view."""


def test_augmentation_where_the_views_stay_on_the_cpu_is_refused():
    lanczos = ViTImageProcessor(size=32, resample=PIL.Image.Resampling.LANCZOS)
    with pytest.raises(UsageError, match="--mixup_alpha augment.*made on the CPU"):
        DistillationTransform.for_models(
            build("hf-vit"), build("hf-resnet"), train=True, views_on_device=True, student_processor=lanczos,
            augmentation=Augmentation(mixup_alpha=0.8, num_classes=NUM_CLASSES), image_column="img", label_column="label",
        )  # fmt: skip


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--auto_augment", "rand-q9"], "--auto_augment 'rand-q9' is not a timm augmentation policy"),
        (["--color_jitter", "-1"], "--color_jitter must be 0 or more"),
        (["--random_erasing", "1.5"], "--random_erasing is a probability between 0 and 1"),
        (["--mixup_alpha", "-0.2"], "--mixup_alpha must be 0 or more"),
        (["--cutmix_alpha", "-1"], "--cutmix_alpha must be 0 or more"),
        (["--mixup_prob", "2"], "--mixup_prob is a probability"),
        (["--mixup_switch_prob", "-0.1"], "--mixup_switch_prob is a probability"),
    ],
)
def test_each_augmentation_flag_refuses_a_bad_value_before_anything_loads(flags, message):
    with pytest.raises(UsageError, match=message):
        parse_distill_args(["--teacher", "t", "--dataset", "d", "--output_dir", "o", *flags])
