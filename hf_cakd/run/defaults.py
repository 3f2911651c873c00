"""What ``distill --teacher T`` chooses when a flag is left out: the student, the dataset, and its labels.

- :func:`default_student`: with no ``--student``, a small student of *another* family than the
  teacher, built from scratch at the data's resolution (a ResNet-18-sized CNN for an attention or
  MLP teacher, a DeiT-Tiny-sized ViT for a CNN teacher), with :func:`default_image_processor`.
- :func:`default_dataset`: with no ``--dataset``, the first dataset the teacher's model card names
  whose label count is the teacher's; :func:`default_dataset_warning` is what to log about it.
- :func:`dataset_labels`: a Hub dataset's class names from its metadata, before any image is
  downloaded, so label spaces can be checked first.

Nothing here downloads images: the Hub is asked for model cards, dataset scripts/metadata only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import datasets
import PIL.Image
from datasets import ClassLabel
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError, HTTPError
from transformers import (
    PreTrainedModel,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..backbones.base import FAMILIES
from ..data.loading import LABEL_COLUMN_NAMES
from ..errors import UsageError
from .hub import card_metadata
from ..model_specs import label_fields

logger = logging.getLogger(__name__)

DEFAULT_CNN_STUDENT = "hf_cakd:default-resnet18"
DEFAULT_VIT_STUDENT = "hf_cakd:default-deit-tiny"
DEFAULT_STUDENTS = (DEFAULT_CNN_STUDENT, DEFAULT_VIT_STUDENT)
MIN_VIT_GRID = 8
"""The default ViT student's patch grid is at least this many patches a side."""
VIT_PATCH_SIZES = (16, 4, 2, 1)

# Errors that mean "this Hub lookup did not work" (offline, not found, gated, no such file, bad
# name, a dataset that needs a config name, a network that failed); anything else is a bug and propagates.
_LOOKUP_ERRORS = (OSError, ValueError, EntryNotFoundError, HTTPError, datasets.exceptions.DatasetsError)


# ---- the student ----


def vit_patch_size(image_size: int) -> int:
    """The default ViT student's patch size at ``image_size``: the largest of 16, 4, 2, 1 px that
    leaves a patch grid of at least 8 x 8.

    16 px patches (DeiT's) from 128 px up (128 px -> 8 x 8, 224 px -> 14 x 14); 4 px patches for
    small images, as ViTs trained on CIFAR use (32 px -> 8 x 8, 64 px -> 16 x 16); 2 px and 1 px
    only below 32 px (28 px MNIST -> 14 x 14). Fewer than 8 x 8 tokens leave attention too little
    to mix and the four-stage staged view too little spatial detail to distil into.
    """
    if image_size < 1:
        raise UsageError(f"The student's image size must be a positive number of pixels, got {image_size}.")
    return next(p for p in VIT_PATCH_SIZES if image_size // p >= MIN_VIT_GRID or p == 1)


def build_default_student(name: str, image_size: int, id2label: Mapping) -> PreTrainedModel:
    """The default student ``name`` (:data:`DEFAULT_CNN_STUDENT` or :data:`DEFAULT_VIT_STUDENT`),
    freshly initialised at ``image_size`` with the labels ``id2label``.

    The same arguments always give the same architecture, so a resumed run rebuilds the model its
    checkpoint was saved from; ``config._name_or_path`` is ``name``.
    """
    if name == DEFAULT_CNN_STUDENT:
        # ResNet-18: 7x7/2 stem with 3x3/2 max-pool, basic blocks 2-2-2-2, widths 64-512.
        config = ResNetConfig(
            embedding_size=64,
            hidden_sizes=[64, 128, 256, 512],
            depths=[2, 2, 2, 2],
            layer_type="basic",
            hidden_act="relu",
            downsample_in_first_stage=False,
            image_size=int(image_size),
            **label_fields(id2label),
        )
        model = ResNetForImageClassification(config)
    elif name == DEFAULT_VIT_STUDENT:
        # DeiT-Tiny: width 192, 12 layers, 3 heads, MLP 768 (ViTForImageClassification, class token).
        config = ViTConfig(
            hidden_size=192,
            num_hidden_layers=12,
            num_attention_heads=3,
            intermediate_size=768,
            image_size=int(image_size),
            patch_size=vit_patch_size(int(image_size)),
            **label_fields(id2label),
        )
        model = ViTForImageClassification(config)
    else:
        raise UsageError(f"There is no default student {name!r}; the default students are {list(DEFAULT_STUDENTS)}.")
    model.config._name_or_path = name  # what describe_view records and a resume compares
    return model


def default_student_name(teacher_family: str) -> str:
    """The default student for a teacher of ``teacher_family``: one of another family (see :func:`default_student`)."""
    if teacher_family not in FAMILIES:
        raise ValueError(f"teacher_family must be one of {FAMILIES}, got {teacher_family!r}")
    return DEFAULT_VIT_STUDENT if teacher_family == "cnn" else DEFAULT_CNN_STUDENT


def default_student(teacher_family: str, image_size: int, id2label: Mapping) -> tuple[PreTrainedModel, str]:
    """The student ``distill`` builds when no ``--student`` is given, and a one-line description of it.

    A student of another family than the teacher (the cross-architecture case hf_cakd is for),
    small, and built from its config at ``image_size`` (the data's resolution):

    - attention or MLP teacher: a ResNet-18-sized CNN (transformers ``ResNetForImageClassification``,
      basic blocks, depths 2-2-2-2, widths 64-128-256-512; about 11 M parameters), named
      :data:`DEFAULT_CNN_STUDENT`;
    - CNN teacher: a DeiT-Tiny-sized ViT (transformers ``ViTForImageClassification``, width 192,
      12 layers, 3 heads, MLP 768; about 5.5 M parameters) at ``image_size``, with 16 px patches
      from 128 px up and 4 px patches for small images (see :func:`vit_patch_size`), so the
      patch grid is at least 8 x 8; named :data:`DEFAULT_VIT_STUDENT`.

    The config carries ``image_size``, ``id2label``/``label2id`` and ``_name_or_path`` (the name
    above), so a resume can check it; calling this again with the same arguments (or
    :func:`build_default_student` with the name) rebuilds the same architecture. Save
    :func:`default_image_processor` beside it so ``pipeline("image-classification")`` loads it.
    """
    name = default_student_name(teacher_family)
    model = build_default_student(name, image_size, id2label)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    if name == DEFAULT_CNN_STUDENT:
        what = "a ResNet-18-sized CNN (basic blocks 2-2-2-2, widths 64-512)"
    else:
        patch = model.config.patch_size
        grid = image_size // patch
        what = f"a DeiT-Tiny-sized ViT (width 192, 12 layers, 3 heads, {patch} px patches, {grid}x{grid} grid)"
    description = (
        f"{name}: {what}, {millions:.1f}M parameters, built from scratch at {image_size} px "
        f"for the {teacher_family} teacher (no --student given)"
    )
    return model, description


def default_image_processor(image_size: int) -> ViTImageProcessor:
    """The default students' image processor: resize to ``image_size`` x ``image_size``, ImageNet mean/std.

    Saved beside the student, it lets ``pipeline("image-classification", model=output_dir)`` load it;
    hf_cakd's transforms follow it too (no centre crop: the data is already at this resolution).
    """
    return ViTImageProcessor(
        do_resize=True,
        size={"height": int(image_size), "width": int(image_size)},
        resample=PIL.Image.Resampling.BILINEAR,
        do_rescale=True,
        do_normalize=True,
        image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD),
    )


# ---- a dataset's labels, without its images ----


def _pick_label(class_labels: Mapping, label_column: str | None):
    """Among the class-label columns: ``label_column``'s, the only one, or one named label/labels (as the loader picks)."""
    if label_column is not None:
        return class_labels.get(label_column)
    if len(class_labels) == 1:
        return next(iter(class_labels.values()))
    return next((class_labels[name] for name in LABEL_COLUMN_NAMES if name in class_labels), None)


def _label_feature(features: Mapping, label_column: str | None):
    """The label column's ClassLabel among a dataset's features, or None."""
    return _pick_label({n: f for n, f in features.items() if isinstance(f, ClassLabel)}, label_column)


def _labels_from_card_data(card_data, name: str | None, label_column: str | None) -> dict[int, str] | None:
    """Class names from a dataset card's ``dataset_info`` metadata (readable for gated datasets too)."""
    infos = getattr(card_data, "dataset_info", None) if card_data is not None else None
    if isinstance(infos, dict):
        infos = [infos]
    if not infos:
        return None
    info = next((i for i in infos if i.get("config_name", "default") == (name or "default")), infos[0])
    features = {
        f.get("name"): f["dtype"]["class_label"]
        for f in info.get("features") or []
        if isinstance(f.get("dtype"), dict) and "class_label" in f["dtype"]
    }
    chosen = _pick_label(features, label_column)
    if not chosen or not chosen.get("names"):
        return None
    names = chosen["names"]
    if isinstance(names, list):
        return dict(enumerate(map(str, names)))
    return {int(i): str(n) for i, n in sorted(names.items(), key=lambda item: int(item[0]))}


def _hub_dataset_labels(spec: str, name: str | None, label_column: str | None) -> tuple[dict[int, str] | None, str]:
    """(id2label or None, why None): the builder's features first, then the dataset card's metadata."""
    try:
        builder = datasets.load_dataset_builder(spec, name)
    except _LOOKUP_ERRORS as err:
        builder_error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    else:
        features = builder.info.features
        if features is None:
            return None, "its label names are not in its metadata"
        feature = _label_feature(features, label_column)
        if feature is None:
            return None, "it has no ClassLabel column"
        return dict(enumerate(feature.names)), ""
    # A gated dataset (imagenet-1k) refuses the builder without an accepted licence, but its card's
    # metadata is public.
    try:
        card_data = HfApi().dataset_info(spec, expand=["cardData"]).card_data
    except _LOOKUP_ERRORS:
        return None, builder_error
    labels = _labels_from_card_data(card_data, name, label_column)
    return labels, "" if labels else builder_error


def dataset_labels(spec: str, name: str | None = None, *, label_column: str | None = None) -> dict[int, str] | None:
    """A Hub dataset's class names, ``{id: name}``, from its metadata: no image is downloaded.

    Read from ``datasets.load_dataset_builder(spec, name).info.features`` (the label column's
    ``ClassLabel``: ``label_column``, else the only ``ClassLabel`` column, else one named
    ``label``/``labels``), else from the dataset card's ``dataset_info`` metadata (which a gated
    dataset shows without access). ``None`` when the labels cannot be known that way: a local
    folder or file, labels stored as plain integers or strings, metadata without features, an
    unreachable Hub or a dataset that does not exist; the loader then finds the labels, or the
    problem, itself.
    """
    if os.path.exists(spec):
        return None
    labels, reason = _hub_dataset_labels(spec, name, label_column)
    if labels is None:
        logger.info("Label names of %s not known before loading it (%s).", spec, reason)
    return labels


# ---- the dataset ----


def _card_datasets(teacher_spec: str) -> list[str]:
    """The ``datasets:`` of the teacher's model card (a local folder's README.md, or the Hub's)."""
    if teacher_spec.startswith("timm:") or os.path.isfile(teacher_spec):
        raise UsageError(
            f"--teacher {teacher_spec} has no model card naming the data it was trained on: pass --dataset "
            "(a Hub dataset or a local folder)."
        )
    if os.path.isdir(teacher_spec) and not os.path.isfile(os.path.join(teacher_spec, "README.md")):
        raise UsageError(
            f"--teacher {teacher_spec} has no README.md (model card) naming the data it was trained on: "
            "pass --dataset (a Hub dataset or a local folder)."
        )
    try:
        names = card_metadata(teacher_spec).get("datasets")
    except _LOOKUP_ERRORS as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"Cannot read the model card of --teacher {teacher_spec} to choose a dataset ({reason}): pass --dataset."
        ) from err
    return [names] if isinstance(names, str) else list(names or [])


def default_dataset(teacher_spec: str, num_labels: int) -> str:
    """The dataset ``distill`` trains on when no ``--dataset`` is given: the first one the teacher's
    model card lists under ``datasets:`` whose label count is the teacher head's ``num_labels``.

    Label counts come from each dataset's metadata (:func:`dataset_labels`), no image is
    downloaded. For ``google/vit-base-patch16-224`` this is ``imagenet-1k``: gated and large, so
    log :func:`default_dataset_warning` when using the result. Raises
    :class:`~hf_cakd.errors.UsageError` (naming ``--dataset``) when the card cannot be read (a
    ``timm:`` or config spec, a folder without README.md, the Hub unreachable), lists no dataset,
    or lists none with ``num_labels`` labels.
    """
    candidates = _card_datasets(teacher_spec)
    if not candidates:
        raise UsageError(
            f"The model card of --teacher {teacher_spec} names no dataset (no 'datasets:' in its metadata): "
            "pass --dataset."
        )
    checked = []
    for candidate in candidates:
        labels, reason = _hub_dataset_labels(candidate, None, None)
        if labels is not None and len(labels) == num_labels:
            return candidate
        checked.append(f"{candidate}: {len(labels)} labels" if labels is not None else f"{candidate}: {reason}")
    raise UsageError(
        f"No dataset in the model card of --teacher {teacher_spec} has its {num_labels} labels "
        f"({'; '.join(checked)}): pass --dataset."
    )


def default_dataset_warning(dataset: str, teacher_spec: str, num_labels: int) -> str:
    """What to log (as a warning) when :func:`default_dataset` chose the dataset."""
    return (
        f"No --dataset given: training on {dataset}, the first dataset in the model card of {teacher_spec} with its "
        f"{num_labels} labels. It may be gated (accept its terms on its Hub page and log in with `hf auth login`) "
        "and large (imagenet-1k is about 150 GB of images); pass --dataset to choose another, e.g. a smaller one "
        "with --teacher_label_mapping."
    )
