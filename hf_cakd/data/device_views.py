"""Training views made on the device: the CPU augments each image once, the device gives each model its view.

Decoding, the random crop and flip, and one resize run on the CPU (in the DataLoader workers) and
yield one uint8 image per row, ``images`` in the batch, at the larger of the two models' training
resolutions. After the batch reaches the device, :class:`DeviceViews` resizes it to each model's
resolution (antialiased, with that model's interpolation, as PIL resizes on the CPU) and
normalises it with that model's mean and std, giving ``pixel_values`` and ``teacher_pixel_values``.
Both views are made from the same augmented image, so they show the same crop by construction.

Why uint8 on the CPU: it is what the crop's resize produces (PIL works on 8-bit pixels), so
nothing is lost by stopping there; the float conversion and normalisation move to the device; and
a uint8 view is a quarter of the bytes of a float32 one (an eighth of two) through worker queues,
pinned memory and the copy to the device. What this buys per core is benchmarks/README.md's pipeline table
(docs/architecture.md, "Feeding an accelerator").

Tiny images (CIFAR's 32 px) keep their own size on the CPU (unless it exceeds both models'
resolutions): each model's view is then one resize from the image itself, as
:class:`~hf_cakd.data.transforms.TrainTransform` makes it, and a 32 px model sees exactly the
pixels it saw before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import PIL.Image
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from .augment import Augmentation
from .transforms import ModelInputSpec, is_small_image, random_crop_and_flip, random_shift, to_rgb

logger = logging.getLogger(__name__)

IMAGES_KEY = "images"
"""The batch key of the uint8 ``(B, 3, H, W)`` augmented images that :class:`DeviceViews` turns into model views."""

# The interpolations the device's antialiased resize shares with PIL (a model resampling otherwise keeps the CPU path).
DEVICE_INTERPOLATIONS = (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)


class SharedTrainTransform:
    """The CPU half of :class:`DeviceViews`: :class:`~hf_cakd.data.transforms.TrainTransform`'s random
    crop and flip, done once, then the CPU half of ``augmentation`` (timm's policy and colour jitter), as a
    uint8 ``(3, H, W)`` tensor.

    Photos are cropped by ``RandomResizedCrop`` to ``size``; tiny images are shifted as for training
    and kept at their own size, or stretched to ``size`` when larger. The random draws are
    TrainTransform's, in the same order, so with the same RNG state both pick the same crop and flip.
    ``mean`` is the fill colour of the policy's geometric operations (timm's ``img_mean``).
    """

    def __init__(
        self,
        size: tuple[int, int],
        interpolation: InterpolationMode,
        augmentation: Augmentation | None = None,
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    ):
        self.size = size
        self.interpolation, self.augmentation, self.mean = interpolation, augmentation, mean
        self.crop = v2.Compose(random_crop_and_flip(size, interpolation))
        self.shrink = v2.Resize(size, interpolation=interpolation)
        self.flip = v2.RandomHorizontalFlip()
        self.to_uint8 = v2.Compose([v2.ToImage(), v2.ToPureTensor()])

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        image = to_rgb(image)
        if not is_small_image(image):
            image = self.crop(image)
        else:
            image = random_shift(image)
            if image.height > self.size[0] or image.width > self.size[1]:
                image = self.shrink(image)
            image = self.flip(image)
        if self.augmentation is not None:
            image = self.augmentation.augment_image(image, self.mean, self.interpolation)
        return self.to_uint8(image)


@dataclass(frozen=True)
class DeviceViews:
    """Turns a batch's uint8 ``images`` into ``pixel_values`` (student) and ``teacher_pixel_values``, on its device.

    ``DistillationTrainer(device_views=...)`` applies it in ``compute_loss``; the CPU side is
    :meth:`cpu_transform` (``DistillationTransform.for_models(..., views_on_device=True)`` sets both
    up). Build it with :meth:`plan`, which says when a pair's views cannot be made this way.
    """

    student: ModelInputSpec
    teacher: ModelInputSpec | None = None
    augmentation: Augmentation | None = None
    """The recipe's augmentation: its CPU half runs in :meth:`cpu_transform`, its batch half (random erasing,
    Mixup/CutMix) on the shared images here, before either model's view is made."""

    @classmethod
    def plan(
        cls, student: ModelInputSpec, teacher: ModelInputSpec | None = None, augmentation: Augmentation | None = None
    ) -> DeviceViews | None:
        """The device views of this pair, or None (logged, with the reason) when a view cannot be made on the device."""
        specs = {"student": student, "teacher": teacher}
        unsupported = [
            f"the {role} resamples with {spec.interpolation.value}"
            for role, spec in specs.items()
            if spec is not None and spec.interpolation not in DEVICE_INTERPOLATIONS
        ]
        if unsupported:
            logger.info(
                "Training views stay on the CPU, each model's made there: %s, which the device's antialiased resize "
                "does not match (it does bilinear and bicubic).", " and ".join(unsupported),
            )
            return None
        views = cls(student, teacher, augmentation)
        shown = {role: spec.size for role, spec in specs.items() if spec is not None}
        sizes = " and ".join(f"{role} {height}x{width}" for role, (height, width) in shown.items())
        logger.info(
            "Training views: each row's image is augmented once on the CPU (a photo cropped to %dx%d); the training "
            "step makes the %s views from it.",
            *views.size, sizes,
        )
        return views

    @property
    def size(self) -> tuple[int, int]:
        """The CPU view's resolution: the larger of the two models' in each dimension."""
        specs = [spec for spec in (self.student, self.teacher) if spec is not None]
        return max(spec.size[0] for spec in specs), max(spec.size[1] for spec in specs)

    def cpu_transform(self) -> SharedTrainTransform:
        """The transform making ``images`` on the CPU; it resizes with the interpolation of a model at its size
        (the student's when both are), so that model's view is exactly what its own TrainTransform gives."""
        at_size = [spec for spec in (self.student, self.teacher) if spec is not None and spec.size == self.size]
        interpolation = (at_size or [self.student])[0].interpolation
        return SharedTrainTransform(self.size, interpolation, self.augmentation, self.student.mean)

    def __call__(self, batch: dict) -> dict:
        """``batch`` with ``images`` replaced by ``pixel_values`` (and ``teacher_pixel_values``), on its device;
        with the recipe's ``augmentation``, the images erased and mixed and ``labels`` the mixed targets."""
        images = F.to_dtype(batch.pop(IMAGES_KEY), torch.float32, scale=True)
        if self.augmentation is not None:
            images, labels = self.augmentation.augment_batch(
                images, batch.get("labels"), self.student.mean, self.student.std
            )
            if labels is not None:
                batch["labels"] = labels
        batch["pixel_values"] = _model_view(images, self.student)
        if self.teacher is not None:
            batch["teacher_pixel_values"] = _model_view(images, self.teacher)
        return batch


def _model_view(images: torch.Tensor, spec: ModelInputSpec) -> torch.Tensor:
    """``images`` (floats in [0, 1]) at ``spec``'s size, resized as PIL does, and normalised."""
    if tuple(images.shape[-2:]) != spec.size:
        images = F.resize(images, list(spec.size), interpolation=spec.interpolation, antialias=True)
        if spec.interpolation == InterpolationMode.BICUBIC:
            images = images.clamp(0.0, 1.0)  # bicubic overshoots; PIL's 8-bit result is clipped
    return F.normalize(images, list(spec.mean), list(spec.std))
