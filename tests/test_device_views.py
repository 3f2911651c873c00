"""Training views made on the device from one augmented uint8 image per row (hf_cakd.data.device_views).

Each model's derived view is compared with the view its own CPU transform (``TrainTransform``) makes
from the same RNG state, so the same crop and flip: on real photos at 224 px (demo_data/photos) and
on CIFAR-10 images at 32 px, for the student and the teacher. Differences are in pixel units (the
views un-normalised to [0, 1]); two independent crops of one image differ by 30-110/255.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
from transformers import ViTImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_cakd.data import IMAGES_KEY, DeviceViews, DistillationTransform, ModelInputSpec, TrainTransform
from tiny_models import build

REPO = Path(__file__).resolve().parents[1]
BILINEAR, BICUBIC = InterpolationMode.BILINEAR, InterpolationMode.BICUBIC
SEEDS = range(3)


def spec(side: int, interpolation: InterpolationMode, imagenet: bool = False) -> ModelInputSpec:
    mean, std = (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD) if imagenet else ((0.5,) * 3, (0.5,) * 3)
    return ModelInputSpec((side, side), side, tuple(mean), tuple(std), interpolation)


@functools.cache
def photos() -> list[PIL.Image.Image]:
    return [PIL.Image.open(path).convert("RGB") for path in sorted((REPO / "demo_data/photos").glob("*.jpg"))]


@functools.cache
def cifar_images(count: int = 6) -> list[PIL.Image.Image]:
    rows = pq.read_table(REPO / "demo_data/cifar10/train.parquet").slice(0, count).to_pylist()
    return [PIL.Image.open(io.BytesIO(row["img"]["bytes"])).convert("RGB") for row in rows]


def in_pixels(view: torch.Tensor, model: ModelInputSpec) -> torch.Tensor:
    """A normalised view back in [0, 1] pixel units."""
    return view * torch.tensor(model.std).view(-1, 1, 1) + torch.tensor(model.mean).view(-1, 1, 1)


def device_and_cpu_views(image, views: DeviceViews, seed: int) -> list[tuple]:
    """(derived view, the model's own CPU view, its spec) for each model, both from RNG state ``seed``."""
    torch.manual_seed(seed)
    batch = views({IMAGES_KEY: views.cpu_transform()(image)[None]})
    pairs = []
    for key, model in (("pixel_values", views.student), ("teacher_pixel_values", views.teacher)):
        torch.manual_seed(seed)
        pairs.append((batch[key][0], TrainTransform(model)(image), model))
    return pairs


# (images, student, teacher, mean |difference| allowed per view, max |difference| allowed per pixel), in 1/255.
CASES = {
    # The headline pair's recipes: ResNet-18 (bicubic, ImageNet mean/std) <- ViT-B/16 (bilinear, 0.5), both 224 px;
    # the CPU resizes as the student does, so the teacher's view differs by its interpolation only.
    "photos, 224 px student and teacher": (photos, spec(224, BICUBIC, True), spec(224, BILINEAR), 4.0, None),
    "photos, 160 px student <- 224 px teacher": (photos, spec(160, BICUBIC, True), spec(224, BILINEAR), 4.0, None),
    "photos, 224 px student <- 288 px teacher": (photos, spec(224, BILINEAR), spec(288, BICUBIC, True), 4.0, None),
    # Tiny images stay at their own size on the CPU: every view is one resize from the image, as before.
    "CIFAR, 32 px student and teacher": (cifar_images, spec(32, BILINEAR), spec(32, BICUBIC, True), 0.0, 0.0),
    "CIFAR, 64 px student <- 32 px teacher": (cifar_images, spec(64, BILINEAR), spec(32, BILINEAR, True), 0.5, 2.0),
    "CIFAR, 32 px student <- 64 px teacher": (cifar_images, spec(32, BICUBIC), spec(64, BICUBIC, True), 0.5, 2.0),
}


@pytest.mark.parametrize("case", CASES)
def test_derived_views_match_each_models_own_cpu_view(case):
    images, student, teacher, mean_tolerance, max_tolerance = CASES[case]
    views = DeviceViews(student, teacher)
    for role in ("student", "teacher"):
        means, largest = [], 0.0
        for image in images():
            for seed in SEEDS:
                derived, own, model = device_and_cpu_views(image, views, seed)[role == "teacher"]
                assert derived.shape == own.shape == (3, *model.size) and derived.dtype == torch.float32
                difference = (in_pixels(derived, model) - in_pixels(own, model)).abs() * 255
                means.append(difference.mean().item())
                largest = max(largest, difference.max().item())
        assert np.mean(means) <= mean_tolerance + 1e-3, (role, np.mean(means))
        if max_tolerance is not None:
            assert largest <= max_tolerance + 1e-3, (role, largest)


def test_an_independent_crop_is_far_outside_the_tolerance():
    """What the tolerances above would miss: the views of two different random crops."""
    views = DeviceViews(spec(224, BICUBIC, True), spec(224, BILINEAR))
    differences = []
    for image in photos():
        derived, _, model = device_and_cpu_views(image, views, seed=0)[0]
        torch.manual_seed(1)
        other = TrainTransform(model)(image)
        differences.append(((in_pixels(derived, model) - in_pixels(other, model)).abs().mean() * 255).item())
    assert min(differences) > 10 and np.mean(differences) > 30, differences


@pytest.mark.parametrize("case", CASES)
def test_the_two_views_are_one_image(case):
    """The view at the CPU image's size, resized to the other's size and normalisation, is the other view."""
    images, student, teacher, _, _ = CASES[case]
    views = DeviceViews(student, teacher)
    for image in images()[:2]:
        cpu_size = tuple(views.cpu_transform()(image).shape[-2:])
        (student_view, _, _), (teacher_view, _, _) = device_and_cpu_views(image, views, seed=0)
        (source, source_model), (other, other_model) = sorted(
            [(student_view, student), (teacher_view, teacher)], key=lambda view: view[1].size != cpu_size
        )
        mapped = in_pixels(source, source_model)
        if source_model.size != other_model.size:
            mapped = F.resize(mapped, list(other_model.size), interpolation=other_model.interpolation, antialias=True)
            mapped = mapped.clamp(0, 1) if other_model.interpolation == BICUBIC else mapped
        torch.testing.assert_close(mapped, in_pixels(other, other_model), atol=1e-5, rtol=0)


def test_cpu_view_is_uint8_at_the_larger_resolution_and_tiny_images_keep_their_size():
    views = DeviceViews(spec(160, BICUBIC), spec(224, BILINEAR))
    assert views.size == (224, 224)
    photo, tiny = photos()[0], cifar_images(1)[0]
    assert views.cpu_transform()(photo).shape == (3, 224, 224) and views.cpu_transform()(photo).dtype == torch.uint8
    assert views.cpu_transform()(tiny).shape == (3, 32, 32)
    assert DeviceViews(spec(16, BILINEAR), spec(24, BILINEAR)).cpu_transform()(tiny).shape == (3, 24, 24)


def test_a_model_resampling_as_the_device_cannot_keeps_each_models_cpu_view(caplog):
    lanczos = ViTImageProcessor(size=32, resample=PIL.Image.Resampling.LANCZOS)
    student, teacher = build("hf-vit"), build("hf-resnet")
    options = dict(train=True, views_on_device=True, image_column="img", label_column="label")
    with caplog.at_level("INFO", logger="hf_cakd.data.device_views"):
        kept = DistillationTransform.for_models(student, teacher, teacher_processor=lanczos, **options)
    assert kept.device_views is None and set(kept.transforms) == {"pixel_values", "teacher_pixel_values"}
    # Only this module's records: another module's INFO may pass too when an earlier run set hf_cakd's level.
    messages = [record.getMessage() for record in caplog.records if record.name == "hf_cakd.data.device_views"]
    assert len(messages) == 1
    assert messages[0].startswith("Training views stay on the CPU")
    assert "the teacher resamples with lanczos" in messages[0]

    derived = DistillationTransform.for_models(student, teacher, **options)
    assert derived.device_views == DeviceViews(derived.device_views.student, derived.device_views.teacher)
    assert set(derived.transforms) == {IMAGES_KEY}
    with pytest.raises(ValueError, match="evaluation views are each model's own preprocessing"):
        DistillationTransform.for_models(student, teacher, **{**options, "train": False})
