"""Rows to batches: one decoded image, a view for the student and a view for the teacher, and the label.

The image column is read undecoded (``datasets.Image(decode=False)``) and decoded here, so a
missing (empty) or undecodable image is reported with its row and split, or skipped on request,
instead of stopping training with a bare PIL error from inside ``datasets``.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np
import torch
from datasets import Dataset

from .errors import MissingImageError, UndecodableImageError
from .transforms import ImageTransform, image_transforms, to_rgb

logger = logging.getLogger(__name__)

ROW_INDEX_COLUMN = "__hf_cakd_row__"
SKIPPED_IMAGES_KEY = "skipped_images"


class DistillationTransform:
    """The on-the-fly dataset transform giving ``pixel_values``, ``teacher_pixel_values`` and ``labels``.

    ``apply_to(dataset)`` attaches it with ``Dataset.with_transform``, so images are decoded and
    augmented when a batch is read, never stored. ``teacher_pixel_values`` is left out when
    there is no ``teacher_transform``.

    The teacher's logits must describe the image the student sees, so both transforms run from
    the same torch RNG state: random crops and flips that depend on the input image only (as in
    :class:`~hf_cakd.data.transforms.TrainTransform`) pick the same view for both models, each at
    its own resolution and normalisation.

    With ``skip_bad_images=True`` a missing or undecodable image is logged once per row and
    marked by ``pixel_values=None``, which :class:`DistillationCollator` drops and counts in the
    batch; ``skipped_rows`` holds the row indices seen so far, but DataLoader workers each count
    in their own copy of this object, so only the batches' counts add up across workers.

    Use one transform per dataset: ``apply_to`` records the split name for messages, and row
    indices are the dataset's.
    """

    def __init__(
        self,
        student_transform: ImageTransform,
        teacher_transform: ImageTransform | None = None,
        *,
        image_column: str,
        label_column: str,
        skip_bad_images: bool = False,
    ):
        self.student_transform = student_transform
        self.teacher_transform = teacher_transform
        self.image_column = image_column
        self.label_column = label_column
        self.skip_bad_images = skip_bad_images
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
        **columns_and_options,
    ) -> "DistillationTransform":
        """Each model's own transform (its processor or timm config, at the given resolution), paired."""
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

    def apply_to(self, dataset: Dataset, split: str | None = None) -> Dataset:
        """A view of ``dataset`` that yields model inputs; ``dataset`` itself is left unchanged.

        ``split`` names the dataset in messages; by default its own ``dataset.split``.
        """
        self.split = split or (str(dataset.split) if dataset.split else None)
        dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
        dataset = dataset.add_column(ROW_INDEX_COLUMN, np.arange(len(dataset)))
        return dataset.with_transform(self, columns=[self.image_column, self.label_column, ROW_INDEX_COLUMN])

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        student_views, teacher_views = [], []
        for encoded, row in zip(batch[self.image_column], batch[ROW_INDEX_COLUMN]):
            image = self._decode(encoded, row)
            student, teacher = self._views(image) if image is not None else (None, None)
            student_views.append(student)
            teacher_views.append(teacher)
        out = {"pixel_values": student_views, "labels": list(batch[self.label_column])}
        if self.teacher_transform is not None:
            out["teacher_pixel_values"] = teacher_views
        return out

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

    def _views(self, image):
        if self.teacher_transform is None:
            return self.student_transform(image), None
        with torch.random.fork_rng(devices=[]):
            student = self.student_transform(image)
        return student, self.teacher_transform(image)


class DistillationCollator:
    """Stack examples into ``pixel_values``, ``teacher_pixel_values`` (when present) and int64 ``labels``.

    Examples whose image was skipped (``pixel_values is None``) are dropped, so a batch can be
    smaller than the batch size; ``skipped_images`` (an int64 scalar tensor) says how many were.
    The collator runs in the DataLoader workers, so summing that field over an epoch's batches,
    and over processes, counts the images skipped that epoch.
    """

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        kept = [example for example in examples if example["pixel_values"] is not None]
        if not kept:
            raise UndecodableImageError(
                f"All {len(examples)} images of this batch were missing or undecodable and skipped; "
                "check the dataset's image column."
            )
        batch = {
            "pixel_values": torch.stack([example["pixel_values"] for example in kept]),
            "labels": torch.tensor([example["labels"] for example in kept], dtype=torch.int64),
            SKIPPED_IMAGES_KEY: torch.tensor(len(examples) - len(kept), dtype=torch.int64),
        }
        if "teacher_pixel_values" in kept[0]:
            batch["teacher_pixel_values"] = torch.stack([example["teacher_pixel_values"] for example in kept])
        return batch
