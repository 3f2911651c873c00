"""Rows to batches: one decoded image, a view for the student and a view for the teacher, and the label.

For training, the two views can instead be made on the device from one augmented uint8 image per
row (``views_on_device``, see :mod:`hf_cakd.data.device_views`).

The image column is read undecoded (``datasets.Image(decode=False)``) and decoded here, so a
missing (empty) or undecodable image is reported with its row and split, or skipped on request,
instead of stopping training with a bare PIL error from inside ``datasets``.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np
import torch
from datasets import Dataset, IterableDataset
from torchvision.transforms.v2 import functional as F

from ..errors import UsageError
from .augment import Augmentation
from .device_views import IMAGES_KEY, DeviceViews
from .errors import LabelColumnError, MissingImageError, UndecodableImageError
from .transforms import ImageTransform, image_transforms, model_input_spec, to_rgb

logger = logging.getLogger(__name__)

ROW_INDEX_COLUMN = "__hf_cakd_row__"
SKIPPED_IMAGES_KEY = "skipped_images"
# Rows a stream is shuffled through (the datasets default), held as encoded image bytes.
STREAM_SHUFFLE_BUFFER = 1000


class DistillationTransform:
    """The on-the-fly dataset transform giving ``pixel_values``, ``teacher_pixel_values`` and ``labels``.

    ``apply_to(dataset)`` attaches it with ``Dataset.with_transform`` (a lazy ``map`` on a stream),
    so images are decoded and augmented when a batch is read, never stored.
    ``teacher_pixel_values`` is left out when there is no ``teacher_transform``.

    The teacher's logits must describe the image the student sees, so both transforms run from
    the same torch RNG state: random crops and flips that depend on the input image only (as in
    :class:`~hf_cakd.data.transforms.TrainTransform`) pick the same view for both models, each at
    its own resolution and normalisation.

    With ``device_views`` instead of the two transforms, each row gives one augmented uint8 image,
    ``images``, and ``device_views`` (given to the ``DistillationTrainer``) makes both models'
    views from it on the device: one decode, crop and resize per image on the CPU.

    With ``skip_bad_images=True`` a missing or undecodable image is logged once per row and
    marked by ``None`` in place of its views, which :class:`DistillationCollator` drops and counts in the
    batch; ``skipped_rows`` holds the row indices seen so far, but DataLoader workers each count
    in their own copy of this object, so only the batches' counts add up across workers.

    With ``num_labels``, a label outside ``0..num_labels - 1`` stops the run naming its row: a
    stream's labels cannot be checked before training (see :func:`~hf_cakd.data.load_image_dataset`).

    Use one transform per dataset: ``apply_to`` records the split name for messages, and row
    indices are the dataset's.
    """

    def __init__(
        self,
        student_transform: ImageTransform | None = None,
        teacher_transform: ImageTransform | None = None,
        *,
        device_views: DeviceViews | None = None,
        image_column: str,
        label_column: str,
        skip_bad_images: bool = False,
        num_labels: int | None = None,
    ):
        with_views = device_views is not None
        if with_views == (student_transform is not None) or (with_views and teacher_transform is not None):
            raise ValueError(
                "Pass student_transform (and teacher_transform), or device_views alone, which makes both views."
            )
        self.device_views = device_views
        if device_views is not None:
            self.transforms = {IMAGES_KEY: device_views.cpu_transform()}
        else:
            self.transforms = {"pixel_values": student_transform}
            if teacher_transform is not None:
                self.transforms["teacher_pixel_values"] = teacher_transform
        self.image_column = image_column
        self.label_column = label_column
        self.skip_bad_images = skip_bad_images
        self.num_labels = num_labels
        self.skipped_rows: set[int] = set()
        self.split: str | None = None
        self._decoder = datasets.Image()

    @classmethod
    def for_models(
        cls,
        student,
        teacher=None,
        *,
        train: bool,
        student_processor=None,
        teacher_processor=None,
        student_image_size: int | None = None,
        teacher_image_size: int | None = None,
        views_on_device: bool = False,
        augmentation: Augmentation | None = None,
        **columns_and_options,
    ) -> "DistillationTransform":
        """Each model's own transform (its processor or timm config, at the given resolution), paired.

        ``views_on_device=True`` (training only) makes one augmented uint8 image per row instead,
        from which the trainer's ``device_views`` (this transform's ``device_views``) make both
        views; where that cannot match a model's own transform, the log says why and each model's
        view is made on the CPU as before. ``augmentation`` (the recipe of :mod:`hf_cakd.data.augment`)
        needs the views made on the device, where both models' views come from its one augmented image.
        """
        if views_on_device and not train:
            raise ValueError(
                "views_on_device=True is for training: evaluation views are each model's own preprocessing."
            )
        augmentation = augmentation if augmentation is not None and augmentation.active else None
        if views_on_device:
            student_spec = model_input_spec(student, student_processor, image_size=student_image_size)
            teacher_spec = None
            if teacher is not None:
                teacher_spec = model_input_spec(teacher, teacher_processor, image_size=teacher_image_size)
            device_views = DeviceViews.plan(student_spec, teacher_spec, augmentation)
            if device_views is not None:
                return cls(device_views=device_views, **columns_and_options)
        if augmentation is not None:
            raise UsageError(
                f"{' '.join(augmentation.flags())} augment(s) the one training image both models' views are made from on "
                "the device, and this pair's views are made on the CPU (the log says why): drop those flags, or use "
                "models that resize bilinearly or bicubically."
            )
        student_transform = image_transforms(student, student_processor, train=train, image_size=student_image_size)
        teacher_transform = None
        if teacher is not None:
            teacher_transform = image_transforms(
                teacher, teacher_processor, train=train, image_size=teacher_image_size
            )
        return cls(student_transform, teacher_transform, **columns_and_options)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped_rows)

    def apply_to(
        self, dataset: Dataset | IterableDataset, split: str | None = None, shuffle_seed: int | None = None
    ) -> Dataset | IterableDataset:
        """A view of ``dataset`` that yields model inputs; ``dataset`` itself is left unchanged.

        ``split`` names the dataset in messages; by default its own ``dataset.split``.

        A stream (``datasets.IterableDataset``) has neither a length to number its rows ahead nor
        ``with_transform``: its rows are numbered as they are read and transformed by a lazy
        ``map``. The Trainer's sampler shuffles a ``Dataset``, but cannot shuffle a stream, so with
        ``shuffle_seed`` a stream's files and rows (through a buffer of ``STREAM_SHUFFLE_BUFFER``)
        are shuffled anew each epoch; a ``Dataset`` is returned in its order. A stream's rows are
        numbered as they are read: for a split of one file, a row's number is its row in the file;
        for several files (shuffled, or shared among DataLoader workers) it is not the row's place.
        """
        self.split = split or (str(dataset.split) if dataset.split else None)
        dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
        columns = [self.image_column, self.label_column, ROW_INDEX_COLUMN]
        if isinstance(dataset, IterableDataset):
            dataset = dataset.select_columns([self.image_column, self.label_column])
            dataset = dataset.map(_row_index, with_indices=True)
            if shuffle_seed is not None:
                dataset = dataset.shuffle(seed=shuffle_seed, buffer_size=STREAM_SHUFFLE_BUFFER)
            return dataset.map(self, batched=True, batch_size=1, remove_columns=columns)
        dataset = dataset.add_column(ROW_INDEX_COLUMN, np.arange(len(dataset)))
        return dataset.with_transform(self, columns=columns)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        views: dict[str, list] = {key: [] for key in self.transforms}
        for encoded, row in zip(batch[self.image_column], batch[ROW_INDEX_COLUMN]):
            image = self._decode(encoded, row)
            for key, view in self._views(image).items():
                views[key].append(view)
        labels = list(batch[self.label_column])
        if self.num_labels is not None:
            self._check_labels(labels, batch[ROW_INDEX_COLUMN])
        return {**views, "labels": labels}

    def _check_labels(self, labels: list[int], rows: list[int]) -> None:
        for label, row in zip(labels, rows):
            if label is None or not 0 <= label < self.num_labels:
                of_split = f" of split {self.split!r}" if self.split else ""
                problem = "has no label, none of" if label is None else f"label {label} is outside"
                raise LabelColumnError(
                    f"Row {row}{of_split}: {problem} the {self.num_labels} classes "
                    f"0..{self.num_labels - 1}. Label -1 usually marks unlabelled rows (a test split without "
                    "labels): pass eval_split= naming a labelled split."
                )

    def _decode(self, encoded: dict | None, row: int):
        if encoded is None or not (encoded.get("bytes") or encoded.get("path")):
            return self._bad_image(row, MissingImageError, "is missing (the cell is empty)", "missing image")
        try:
            return to_rgb(self._decoder.decode_example(encoded))
        # PIL signals broken data with many types (OSError, SyntaxError, struct.error, DecompressionBombError, ...).
        except Exception as err:
            return self._bad_image(
                row, UndecodableImageError, f"cannot be decoded ({err})", f"undecodable image ({err})", cause=err
            )

    def _bad_image(self, row: int, error_type: type, problem: str, summary: str, cause=None) -> None:
        """Raise ``error_type`` naming the row, the problem and the fix, or log the row once and skip it."""
        of_split = f" of split {self.split!r}" if self.split else ""
        if not self.skip_bad_images:
            raise error_type(
                f"Row {row}{of_split}: the image in column {self.image_column!r} {problem}. Fix or remove that "
                "row, or pass skip_bad_images=True (--skip_bad_images) to skip missing and undecodable images."
            ) from cause
        if row not in self.skipped_rows:
            self.skipped_rows.add(row)
            logger.warning("Skipping row %d%s: %s; %d skipped so far.", row, of_split, summary, self.num_skipped)
        return None

    def _views(self, image) -> dict[str, torch.Tensor | None]:
        """Each view of ``image`` (None for a skipped one); two transforms run from the same RNG state."""
        if image is None:
            return dict.fromkeys(self.transforms)
        *first, (last_key, last) = self.transforms.items()
        views = {}
        for key, transform in first:
            with torch.random.fork_rng(devices=[]):
                views[key] = transform(image)
        return {**views, last_key: last(image)}


def _row_index(row: dict, index: int) -> dict[str, int]:
    return {ROW_INDEX_COLUMN: index}


class DistillationCollator:
    """Stack examples into ``pixel_values``, ``teacher_pixel_values`` (when present) and int64 ``labels``
    (when present: examples without labels, for ``Trainer.predict``, give a batch without them).

    Examples with ``images`` (one uint8 image for the device's views, see
    :mod:`hf_cakd.data.device_views`) give ``images`` instead of the two views. Tiny images of
    different sizes in one batch (CIFAR-like sets share one size) are stretched to the largest
    there before they are stacked.

    Examples whose image was skipped (``None``) are dropped, so a batch can be
    smaller than the batch size; ``skipped_images`` says how many were: an int64 tensor with one
    entry per kept example, the first holding the count and the others 0, so that it is
    concatenated and split along the batch like the images (accelerate dispatches a stream's
    batches to the processes that way). The collator runs in the DataLoader workers, so summing
    that field over an epoch's batches, and over processes, counts the images skipped that epoch;
    when a stream is dispatched to several processes the count can be off by the few rows that
    accelerate drops or repeats where a concatenated batch does not divide evenly.
    """

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        image_key = IMAGES_KEY if IMAGES_KEY in examples[0] else "pixel_values"
        kept = [example for example in examples if example[image_key] is not None]
        if not kept:
            raise UndecodableImageError(
                f"All {len(examples)} images of this batch were missing or undecodable and skipped; "
                "check the dataset's image column."
            )
        skipped = torch.zeros(len(kept), dtype=torch.int64)
        skipped[0] = len(examples) - len(kept)
        batch = {image_key: _stack_images([example[image_key] for example in kept]), SKIPPED_IMAGES_KEY: skipped}
        if "labels" in kept[0]:  # images without labels (Trainer.predict for inference) give no labels
            batch["labels"] = torch.tensor([example["labels"] for example in kept], dtype=torch.int64)
        if "teacher_pixel_values" in kept[0]:
            batch["teacher_pixel_values"] = torch.stack([example["teacher_pixel_values"] for example in kept])
        return batch


def _stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """One tensor of ``images``; those smaller than the largest are first stretched to it (antialiased bilinear)."""
    largest = [max(image.shape[-2] for image in images), max(image.shape[-1] for image in images)]
    return torch.stack(
        [image if list(image.shape[-2:]) == largest else F.resize(image, largest, antialias=True) for image in images]
    )
