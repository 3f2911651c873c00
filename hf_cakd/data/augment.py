"""The recipe of long runs, with timm's own transforms, applied once so that teacher and student see one image.

Two halves, both on the one augmented image per row that :mod:`hf_cakd.data.device_views` makes:

- on the CPU, after the random crop and flip and before the uint8 output: RandAugment (TrivialAugment
  is its one-op, uniform-magnitude form), AugMix or AutoAugment (``--auto_augment``, a timm policy string) and colour jitter (``--color_jitter``),
  the "secondary" stage of timm's ``transforms_imagenet_train``;
- on the device, on the batch of those images as floats in [0, 1], before each model's view is resized
  and normalised: timm's ``RandomErasing`` (``--random_erasing``) and timm's ``Mixup`` (``--mixup_alpha``,
  ``--cutmix_alpha``, ``--mixup_prob``, ``--mixup_switch_prob``), one draw per batch.

Each model's view is then a resize and a normalisation of the same augmented (erased, mixed) image, so
the two views agree up to resolution and normalisation by construction (Beyer et al.'s "function
matching" when ``--ce_weight 0``); a CutMix box drawn at the shared resolution is the same region of the
image in both views. See docs/architecture.md, "The recipe for long runs".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import PIL.Image
import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.data.mixup import mixup_target
from timm.data.transforms_factory import transforms_imagenet_train
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..errors import UsageError

POLICY_EXAMPLES = (
    "rand-m9-mstd0.5-inc1 (RandAugment), rand-n1-m10-mstd101 (one op at a uniform magnitude: TrivialAugment), "
    "augmix-m5-w4-d2 (AugMix) or original (AutoAugment)"
)
ERASING_MODE = "pixel"
"""timm's random erasing fills the box with per-pixel normal noise in a model's normalised space (its train.py default)."""


AUGMENTATION_FLAGS = (
    "auto_augment", "color_jitter", "random_erasing", "mixup_alpha", "cutmix_alpha", "mixup_prob", "mixup_switch_prob",
)  # fmt: skip
"""The command-line flags of :class:`Augmentation`'s fields (``DataArguments``; ``results.json``'s ``"recipe"``)."""


@dataclass(frozen=True)
class Augmentation:
    """What a run augments beyond the crop and flip; every field's default leaves it off.

    ``num_classes`` (the dataset's) and ``label_smoothing`` (``--label_smoothing_factor``) shape the
    mixed targets, as in timm's ``Mixup``: the supervised terms then read those soft targets.
    """

    auto_augment: str | None = None
    color_jitter: float | None = None
    random_erasing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.0
    num_classes: int | None = None

    def __post_init__(self):
        for name in ("random_erasing", "mixup_prob", "mixup_switch_prob", "label_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"--{name} is a probability between 0 and 1, got {getattr(self, name)}.")
        for name in ("mixup_alpha", "cutmix_alpha", "color_jitter"):
            if (getattr(self, name) or 0.0) < 0:
                raise UsageError(f"--{name} must be 0 or more, got {getattr(self, name)}.")
        if self.mixes and not self.num_classes:
            raise ValueError("Mixup/CutMix needs num_classes (the dataset's) to mix the targets.")
        if self.auto_augment:
            _cpu_augmentation(self.auto_augment, self.color_jitter, (224, 224), (0.5,) * 3, "bilinear")

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def on_cpu(self) -> bool:
        return bool(self.auto_augment or self.color_jitter)

    @property
    def active(self) -> bool:
        return self.on_cpu or self.random_erasing > 0 or self.mixes

    def flags(self) -> list[str]:
        """The flags that turned augmentation on, for messages."""
        given = {
            "auto_augment": self.auto_augment, "color_jitter": self.color_jitter,
            "random_erasing": self.random_erasing, "mixup_alpha": self.mixup_alpha, "cutmix_alpha": self.cutmix_alpha,
        }  # fmt: skip
        return [f"--{name}" for name, value in given.items() if value]

    def augment_image(
        self, image: PIL.Image.Image, mean: tuple[float, ...], interpolation: InterpolationMode
    ) -> PIL.Image.Image:
        """``image`` (cropped and flipped) through timm's policy and colour jitter, sized for its own resolution."""
        if not self.on_cpu:
            return image
        size = (image.height, image.width)
        return _cpu_augmentation(self.auto_augment, self.color_jitter, size, mean, interpolation.value)(image)

    def augment_batch(
        self, images: torch.Tensor, labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random erasing, then Mixup/CutMix, of float ``images`` in [0, 1]; the mixed targets (or ``labels``).

        Erasing runs in the normalised space of ``mean``/``std`` (the student's), where timm's noise
        has the spread of the data, and the result goes back to [0, 1] (clipped, as an 8-bit image
        would be), so the erased box is part of the image both models see.
        """
        if self.random_erasing > 0:
            normalized = F.normalize(images, list(mean), list(std))
            RandomErasing(self.random_erasing, mode=ERASING_MODE, device=images.device)(normalized)
            std_, mean_ = (torch.tensor(v, device=images.device).view(-1, 1, 1) for v in (std, mean))
            images = (normalized * std_ + mean_).clamp(0.0, 1.0)
        if not self.mixes:
            return images, labels
        return images, self._mix(images, labels)

    def _mix(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """timm's ``Mixup`` in batch mode (mixing ``images`` in place); an odd batch's last image is left unmixed."""
        mixup = Mixup(
            mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha,
            prob=self.mixup_prob,
            switch_prob=self.mixup_switch_prob,
            mode="batch",
            label_smoothing=self.label_smoothing,
            num_classes=self.num_classes,
        )
        even = len(images) - len(images) % 2  # timm mixes image i with image B-1-i and asks for an even batch
        _, targets = mixup(images[:even], labels[:even])
        if even == len(images):
            return targets
        unmixed = mixup_target(labels[even:], self.num_classes, smoothing=self.label_smoothing)
        return torch.cat([targets, unmixed])


@functools.lru_cache(maxsize=64)
def _cpu_augmentation(auto_augment, color_jitter, size, mean, interpolation: str):
    """timm's secondary training stage (policy, then jitter) for images of ``size``; a bad policy is a UsageError."""
    try:
        _, secondary, _ = transforms_imagenet_train(
            img_size=size,
            auto_augment=auto_augment,
            color_jitter=color_jitter,
            force_color_jitter=bool(color_jitter),  # both given: both apply (timm drops jitter under a policy)
            interpolation=interpolation,
            mean=mean,
            separate=True,
            use_prefetcher=True,
        )
    except (AssertionError, KeyError, ValueError, IndexError) as err:
        raise UsageError(
            f"--auto_augment {auto_augment!r} is not a timm augmentation policy ({err or type(err).__name__}); pass e.g. "
            f"{POLICY_EXAMPLES}."
        ) from err
    _keep_a_bit_when_posterizing(secondary)
    return secondary


def _keep_a_bit_when_posterizing(transform) -> None:
    """timm maps posterize's strongest levels (RandAugment's increasing op at magnitude 10, AutoAugment v0's low
    levels) to 0 bits kept, a black image, which Pillow 12+ refuses with a ValueError mid-training. The policy's
    posterize ops here keep at least 1 bit, the strongest posterize Pillow takes. An upstream workaround, with a
    canary that says when to remove it (docs/architecture.md, "Upstream workarounds")."""
    for stage in getattr(transform, "transforms", [transform]):
        ops = [*getattr(stage, "ops", []), *(op for sub_policy in getattr(stage, "policy", []) for op in sub_policy)]
        for op in ops:
            if op.name.startswith("Posterize"):
                op.level_fn = functools.partial(_at_least_one_bit, op.level_fn)


def _at_least_one_bit(level_fn, magnitude: float, hparams: dict) -> tuple[int]:
    (bits,) = level_fn(magnitude, hparams)
    return (max(1, bits),)
