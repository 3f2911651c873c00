"""What a run measures beside its loss: top-1 / top-5 accuracy for ``Trainer(compute_metrics=...)``,
and the count of images skipped as missing or undecodable.

Both accuracies are computed here, from the logits: ``evaluate``'s ``accuracy`` metric is a script
fetched from the Hub, a download (and, offline, a failure to log) for a mean of equalities, and
``evaluate`` has no top-k accuracy.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from transformers import TrainerCallback

from ..data.distillation import SKIPPED_IMAGES_KEY


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` largest logits (all of them when fewer than ``k``).

    Ties are broken towards the lower class index, as ``argmax`` does, so ``k=1`` is top-1 and
    the result does not depend on how the sort happens to order equal logits.
    """
    k = min(k, logits.shape[-1])
    top_k = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    return float((top_k == labels[:, None]).any(axis=-1).mean())


def accuracy_metrics(eval_prediction) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}`` from an ``EvalPrediction`` or a ``(logits, labels)`` pair.

    Logits of several named classifiers (``{"teacher": ...}``) give ``{"teacher_top1": ..., ...}``.
    """
    logits, labels = eval_prediction[0], eval_prediction[1]
    if isinstance(logits, dict):
        return {
            f"{name}_{key}": value for name, named in logits.items() for key, value in accuracy_metrics((named, labels)).items()
        }
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    labels = np.asarray(labels)
    return {"top1": top_k_accuracy(logits, labels, 1), "top5": top_k_accuracy(logits, labels, 5)}


SKIPPED_IMAGES_NAME = "skipped_images.json"  # a checkpoint's count of skipped training images


class SkippedImageCounts(TrainerCallback):
    """Images skipped as missing or undecodable (``--skip_bad_images``), as the batches count them.

    ``train``: over every training batch of this run (an image skipped in each of 3 epochs counts 3
    times); ``eval``: in the last ``Trainer.evaluate`` (a ``predict``'s count is dropped). The
    trainer hands each batch to :meth:`count`; the Trainer's ``on_evaluate`` and ``on_predict``
    close an evaluation's count.
    """

    def __init__(self):
        self._counts: dict[str, torch.Tensor | int] = {}
        self._evaluating: torch.Tensor | int | None = None

    def count(self, inputs: dict, training: bool) -> None:
        """Take a batch's count out of ``inputs`` (the model must not see it)."""
        skipped = inputs.pop(SKIPPED_IMAGES_KEY, None)
        if skipped is None:
            return
        if training:
            self._counts["train"] = self._counts.get("train", 0) + skipped.detach().sum()
        else:
            self._evaluating = (0 if self._evaluating is None else self._evaluating) + skipped.detach().sum()

    def on_evaluate(self, args, state, control, **kwargs):
        if self._evaluating is None:
            self._counts.pop("eval", None)
        else:
            self._counts["eval"] = self._evaluating
        self._evaluating = None

    def on_predict(self, args, state, control, **kwargs):
        self._evaluating = None

    def totals(self, accelerator) -> dict[str, int]:
        """The counts summed over DataLoader workers and processes (every process must call this)."""
        return {
            split: int(accelerator.reduce(torch.as_tensor(count, device=accelerator.device), reduction="sum"))
            for split, count in sorted(self._counts.items())
        }

    def save(self, checkpoint_dir: str, totals: dict[str, int]) -> None:
        """Write the training count so far (``totals``, from :meth:`totals`) into a checkpoint."""
        with open(os.path.join(checkpoint_dir, SKIPPED_IMAGES_NAME), "w") as f:
            json.dump({"train": totals.get("train", 0)}, f)

    def resume(self, checkpoint_dir: str, main_process: bool) -> None:
        """Go on from a checkpoint's training count; only the main process holds it, as :meth:`totals` sums them."""
        path = os.path.join(checkpoint_dir, SKIPPED_IMAGES_NAME)
        if main_process and os.path.isfile(path):
            with open(path) as f:
                self._counts["train"] = json.load(f)["train"]
