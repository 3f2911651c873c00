"""Top-1 / top-5 accuracy for ``Trainer(compute_metrics=...)``, offline-safe.

Top-1 goes through ``evaluate``'s ``accuracy`` metric when it can be loaded; ``evaluate.load``
fetches the metric's script from the Hub, so offline we compute the same number locally.
``evaluate`` has no top-k accuracy: top-5 is always computed here.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

logger = logging.getLogger(__name__)


@functools.cache
def _evaluate_accuracy():
    """``evaluate.load("accuracy")``, or None when it cannot be loaded (offline)."""
    try:
        import evaluate

        return evaluate.load("accuracy")
    except Exception as err:  # evaluate raises several kinds of errors offline
        logger.info("evaluate's accuracy metric is unavailable (%s); computing accuracy locally.", err)
        return None


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` largest logits (all of them when fewer than ``k``).

    Ties are broken towards the lower class index, as ``argmax`` does, so ``k=1`` is top-1 and
    the result does not depend on how the sort happens to order equal logits.
    """
    k = min(k, logits.shape[-1])
    top_k = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    return float((top_k == labels[:, None]).any(axis=-1).mean())


def accuracy_metrics(eval_prediction) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}`` from an ``EvalPrediction`` or a ``(logits, labels)`` pair."""
    logits, labels = eval_prediction[0], eval_prediction[1]
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    labels = np.asarray(labels)
    metric = _evaluate_accuracy()
    if metric is not None:
        top1 = float(metric.compute(predictions=logits.argmax(-1), references=labels)["accuracy"])
    else:
        top1 = float((logits.argmax(-1) == labels).mean())
    return {"top1": top1, "top5": top_k_accuracy(logits, labels, 5)}
