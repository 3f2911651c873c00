"""Per-model image transforms: each model sees the resolution, resampling and normalisation it was trained with.

Teacher and student rarely agree (a ViT normalises with mean/std 0.5 at 224 px, an ImageNet CNN
with the ImageNet statistics, after resizing to 256 and cropping 224), so these numbers are read
from each model's own image processor, or from timm's data config, and never hard-coded. When a
model has neither, :func:`model_input_spec` falls back to ``model.config.image_size`` (else 224)
and the ImageNet mean/std, the statistics almost every pretrained vision backbone uses.

Tiny images (CIFAR's 32 px) are never centre-cropped: an ImageNet ``crop_pct`` recipe would
blur a 32 px image up to 35 and crop it back, a view no CIFAR training uses (its measured cost was
within seed noise: docs/architecture.md, "Resize and crop rules").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import PIL.Image
import torch
from timm.data import resolve_model_data_config
from timm.layers import to_2tuple
from torchvision.transforms import InterpolationMode, v2
from transformers import BitImageProcessor
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..backbones.registry import unwrap_timm
from ..errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 224
DEFAULT_CROP_PCT = 0.875
SMALL_IMAGE_SIDE = 64
"""Images whose shorter side is at most this many pixels (CIFAR, Tiny ImageNet) get the small-image augmentation."""

ImageTransform = Callable[[PIL.Image.Image], torch.Tensor]


@dataclass(frozen=True)
class ModelInputSpec:
    """What one model expects as input.

    ``size`` is the (height, width) of the tensor the model receives. For evaluation an image is
    resized to ``resize`` (an int: the shorter side, aspect ratio kept; a pair: exactly that
    height and width) and then centre-cropped to ``size``.
    """

    size: tuple[int, int]
    resize: int | tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    def at_size(self, image_size: int) -> ModelInputSpec:
        """The same recipe at a square ``image_size``, the resize scaled so the crop keeps its share of the image."""
        scale = image_size / self.size[0]
        if isinstance(self.resize, int):
            resize = math.floor(self.resize * scale)
        else:
            resize = (math.floor(self.resize[0] * scale), math.floor(self.resize[1] * image_size / self.size[1]))
        return replace(self, size=(image_size, image_size), resize=resize)


def model_input_spec(model=None, processor=None, *, image_size: int | None = None) -> ModelInputSpec:
    """Read a model's input recipe from ``processor``, else timm's data config, else the fallback.

    ``image_size`` overrides the resolution (say 32 to train on CIFAR at its native size) and
    keeps the rest of the recipe.
    """
    if processor is not None and hasattr(processor, "data_config"):  # TimmWrapperImageProcessor
        spec = _spec_from_timm_config(processor.data_config)
    elif processor is not None:
        spec = _spec_from_processor(processor)
    elif model is not None and hasattr(unwrap_timm(model), "pretrained_cfg"):
        spec = _spec_from_timm_config(_timm_data_config(unwrap_timm(model)))
    else:
        spec = _fallback_spec(model)
    return spec.at_size(image_size) if image_size else spec


def image_processor_for(
    model, processor=None, *, image_size: int | None = None, small_images: bool | None = None
) -> BitImageProcessor:
    """An image processor doing ``model``'s eval transform (resize, centre crop, normalise).

    For a model that came without a processor (``timm:`` names, bare configs), or whose
    ``processor`` is overridden by ``image_size``: saved beside it, it lets
    ``pipeline("image-classification", model=output_dir)`` load the model and see what evaluation
    fed it. ``small_images`` says whether the data are tiny images (:func:`is_small_image`), which
    :class:`EvalTransform` stretches to the model's size without a crop; when None, a model whose input
    is tiny (``SMALL_IMAGE_SIDE`` or less) is taken to have been trained on tiny images.
    """
    spec = model_input_spec(model, processor, image_size=image_size)
    resize = spec.resize
    tiny = max(spec.size) <= SMALL_IMAGE_SIDE if small_images is None else small_images
    if tiny:
        size = {"height": spec.size[0], "width": spec.size[1]}
    else:
        size = {"shortest_edge": resize} if isinstance(resize, int) else {"height": resize[0], "width": resize[1]}
    return BitImageProcessor(
        size=size,
        do_center_crop=not tiny,
        crop_size={"height": spec.size[0], "width": spec.size[1]},
        image_mean=list(spec.mean),
        image_std=list(spec.std),
        resample=PIL.Image.Resampling[spec.interpolation.name],
    )


def image_transforms(model=None, processor=None, *, train: bool, image_size: int | None = None) -> ImageTransform:
    """A callable turning a PIL image of any mode into the float32 (3, H, W) tensor the model expects.

    ``train=True`` adds random augmentation (see :class:`TrainTransform`); ``train=False`` is the
    deterministic view of :class:`EvalTransform` (resize and centre crop for photos; tiny images
    only stretched to the model's size, untouched when already at it).
    """
    spec = model_input_spec(model, processor, image_size=image_size)
    return TrainTransform(spec) if train else eval_transform(spec)


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """3-channel RGB from any PIL mode (L, P, CMYK, ...), transparency composited onto white as transformers does.

    PIL converts 16-bit, 32-bit integer and float images by clipping their values to 0..255 (a 16-bit
    photo turns white, a float one in [0, 1] black), so those are first scaled to 8 bits: see :func:`to_8_bit`.
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = to_8_bit(image)
    return PIL.Image.fromarray(convert_to_rgb(image, return_numpy=True))


def to_8_bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """An ``L`` image from a one-channel 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) one.

    16-bit values are scaled by 255/65535; an ``I`` image is read as 16-bit when its values exceed 255, and
    an ``F`` image as values in [0, 1] when none exceeds 1 (else as 0..255); NaN becomes 0.
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
        values = values * 255 / 65535
    elif image.mode == "F" and values.max(initial=0) <= 1:
        values = values * 255
    return PIL.Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def is_small_image(image: PIL.Image.Image) -> bool:
    """Whether ``image`` is a tiny one (CIFAR, Tiny ImageNet): its shorter side is at most ``SMALL_IMAGE_SIDE``."""
    return min(image.size) <= SMALL_IMAGE_SIDE


class EvalTransform:
    """The deterministic view, normalised as the model's own preprocessing does.

    Photos are resized and centre-cropped (``spec.resize``, then ``spec.size``). Tiny images are
    stretched straight to ``spec.size`` and never cropped, and one already at that size is passed
    through untouched: the centre crop of an ImageNet recipe (``crop_pct`` 0.875-0.9) would blur a
    32 px CIFAR image (resize to 35-36) and cut a tenth of it away, a view no CIFAR recipe uses.
    """

    def __init__(self, spec: ModelInputSpec):
        self.photo = v2.Compose([*_resize_and_crop(spec), *_to_normalized_tensor(spec)])
        self.small = v2.Compose([*_fit_small(spec), *_to_normalized_tensor(spec)])

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        image = to_rgb(image)
        return self.small(image) if is_small_image(image) else self.photo(image)


def eval_transform(spec: ModelInputSpec) -> ImageTransform:
    """The deterministic view of :class:`EvalTransform`."""
    return EvalTransform(spec)


class TrainTransform:
    """Random crop and horizontal flip, then the model's resolution and normalisation.

    Photos get the usual ``RandomResizedCrop`` (8-100% of the area). Tiny images (shorter side at
    most ``SMALL_IMAGE_SIDE``, like CIFAR's 32 px) would shrink to a few pixels under such crops,
    so they get the CIFAR recipe instead: reflect-pad by 1/8 of each side, crop the original size
    back at a random offset, then stretch to the model's size as for evaluation (nothing at all
    when the image is already at that size).

    Every random choice depends on the input image only, never on the output size, so a teacher's
    and a student's transforms started from the same RNG state pick the same crop and flip.
    """

    def __init__(self, spec: ModelInputSpec):
        self.photo = v2.Compose([*random_crop_and_flip(spec.size, spec.interpolation), *_to_normalized_tensor(spec)])
        self.small = v2.Compose([*_fit_small(spec), v2.RandomHorizontalFlip(), *_to_normalized_tensor(spec)])

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        image = to_rgb(image)
        if not is_small_image(image):
            return self.photo(image)
        return self.small(random_shift(image))


def random_crop_and_flip(size: tuple[int, int], interpolation: InterpolationMode) -> list:
    """The photo augmentation: ``RandomResizedCrop`` (8-100% of the area) to ``size``, then a random horizontal flip."""
    return [v2.RandomResizedCrop(size, interpolation=interpolation), v2.RandomHorizontalFlip()]


def random_shift(image: PIL.Image.Image) -> PIL.Image.Image:
    """The tiny-image augmentation's shift: reflect-pad by 1/8 of each side, crop the original size back at random."""
    padding = [max(1, image.width // 8), max(1, image.height // 8)]
    return v2.RandomCrop((image.height, image.width), padding=padding, padding_mode="reflect")(image)


def _resize_and_crop(spec: ModelInputSpec) -> list:
    return [v2.Resize(spec.resize, interpolation=spec.interpolation), v2.CenterCrop(spec.size)]


def _fit_small(spec: ModelInputSpec) -> list:
    """Stretch to exactly ``spec.size`` (torchvision returns an image already at that size as it is)."""
    return [v2.Resize(spec.size, interpolation=spec.interpolation)]


def _to_normalized_tensor(spec: ModelInputSpec) -> list:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
        v2.ToPureTensor(),
    ]


def _size_field(size, key: str) -> int | None:
    """A field of a processor's ``size``, which is a ``SizeDict`` or, in older configs, a dict."""
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _spec_from_processor(processor) -> ModelInputSpec:
    """The recipe a transformers image processor applies (ViT, ConvNeXt/ResNet, BiT/CLIP styles)."""
    size, crop_size = processor.size, getattr(processor, "crop_size", None)
    height, width = _size_field(size, "height"), _size_field(size, "width")
    shortest = _size_field(size, "shortest_edge")
    crop = (_size_field(crop_size, "height"), _size_field(crop_size, "width")) if crop_size else None
    center_crop = bool(getattr(processor, "do_center_crop", False)) and crop is not None
    crop_pct = getattr(processor, "crop_pct", None)
    if height and width:  # ViT: warp to exactly this size
        resize, out = (height, width), crop if center_crop else (height, width)
    elif shortest and crop_pct:  # ConvNeXt/ResNet: below 384 px resize to size/crop_pct and crop, else warp
        resize = math.floor(shortest / crop_pct) if shortest < 384 else (shortest, shortest)
        out = (shortest, shortest)
    elif shortest:  # BiT/CLIP: shorter side, then the crop (square when none, so batches stack)
        resize, out = shortest, crop if center_crop else (shortest, shortest)
    else:
        raise InputError(
            f"Cannot read an input size from {type(processor).__name__}.size={size}; "
            "pass --student_image_size / --teacher_image_size (image_size= from Python), or a processor with "
            "height/width or shortest_edge."
        )
    mean, std = _processor_mean_std(processor)
    return ModelInputSpec(
        size=out,
        resize=resize,
        mean=mean,
        std=std,
        interpolation=_interpolation(getattr(processor, "resample", None)),
    )


def _processor_mean_std(processor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The processor's rescale and normalisation as one ``(x - mean) / std`` on pixels ``x`` in [0, 1].

    A processor computes ``((255 x * rescale_factor - offset) - image_mean) / image_std``, ``offset`` 1 with
    EfficientNet's ``rescale_offset``, and divides by ``image_std`` once more with EfficientNet's ``include_top``.
    """
    normalize = getattr(processor, "do_normalize", True)
    mean = _per_channel(processor.image_mean) if normalize else (0.0, 0.0, 0.0)
    std = _per_channel(processor.image_std) if normalize else (1.0, 1.0, 1.0)
    rescale = getattr(processor, "do_rescale", True)
    factor = 255 * (getattr(processor, "rescale_factor", 1 / 255) if rescale else 1)
    offset = 1.0 if rescale and getattr(processor, "rescale_offset", False) else 0.0
    extra = _per_channel(processor.image_std) if getattr(processor, "include_top", False) else (1.0, 1.0, 1.0)
    return (
        tuple((m + offset) / factor for m in mean),
        tuple(s * e / factor for s, e in zip(std, extra)),
    )


def _timm_data_config(model) -> dict:
    """timm's data config, at the size a fixed-size model (ViT, Swin) was built for.

    ``pretrained_cfg`` keeps the pretrained resolution even when the model was created with
    another ``img_size``, which its patch embedding then requires.
    """
    config = resolve_model_data_config(model)
    built_for = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if built_for is not None:
        config["input_size"] = (3, *to_2tuple(built_for))
    return config


def _spec_from_timm_config(config: dict) -> ModelInputSpec:
    """timm's eval recipe: resize to size / crop_pct and centre-crop (``squash`` warps instead)."""
    _, height, width = config["input_size"]
    crop_pct = config.get("crop_pct") or DEFAULT_CROP_PCT
    scaled = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    square_crop = config.get("crop_mode", "center") != "squash" and height == width
    return ModelInputSpec(
        size=(height, width),
        resize=scaled[0] if square_crop else scaled,
        mean=_per_channel(config["mean"]),
        std=_per_channel(config["std"]),
        interpolation=InterpolationMode(config.get("interpolation", "bilinear")),
    )


def _fallback_spec(model) -> ModelInputSpec:
    image_size = getattr(getattr(model, "config", None), "image_size", None) or DEFAULT_IMAGE_SIZE
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    logger.info(
        "No image processor or timm data config for %s: using %dx%d and the ImageNet mean/std.",
        type(model).__name__, height, width,
    )
    return ModelInputSpec(
        size=(height, width),
        resize=height if height == width else (height, width),
        mean=tuple(IMAGENET_DEFAULT_MEAN),
        std=tuple(IMAGENET_DEFAULT_STD),
    )


def _per_channel(values) -> tuple[float, ...]:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    return values * 3 if len(values) == 1 else values


def _interpolation(resample) -> InterpolationMode:
    """A torchvision mode from a processor's ``resample`` (a PIL resampling filter, or already a mode)."""
    if resample is None:
        return InterpolationMode.BILINEAR
    if isinstance(resample, InterpolationMode):
        return resample
    return InterpolationMode[PIL.Image.Resampling(int(resample)).name]
