"""Top-1 / top-5 accuracy: values worked out by hand, ties, few classes; nothing asked of the Hub."""

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_cakd.training.metrics import accuracy_metrics, top_k_accuracy

# 4 rows, 7 classes. Row by row: the label is ranked 1st (hit, hit), 3rd (miss, hit), last
# (miss, miss), 6th (miss, miss): top-1 1/4, top-5 2/4.
LOGITS = np.array(
    [
        [0.1, 0.2, 3.0, 0.0, -1.0, 0.5, 0.3],
        [2.0, 0.0, 1.0, 5.0, -2.0, -3.0, 0.5],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -9.0],
        [7.0, 1.0, 6.0, 5.0, 4.0, 3.0, 0.0],
    ],
    dtype=np.float32,
)
LABELS = np.array([2, 0, 6, 1])


def test_hand_computed_top1_and_top5():
    assert accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
    assert top_k_accuracy(LOGITS, LABELS, 3) == 0.5  # rows 0 and 1
    assert top_k_accuracy(LOGITS, LABELS, 6) == 0.75  # row 3's label is 6th
    assert top_k_accuracy(LOGITS, LABELS, 7) == 1.0


def test_accepts_eval_predictions_and_tuple_logits():
    expected = {"top1": 0.25, "top5": 0.5}
    assert accuracy_metrics(EvalPrediction(predictions=LOGITS, label_ids=LABELS)) == expected
    # A model returning several outputs gives the Trainer a tuple; the logits come first.
    assert accuracy_metrics(((LOGITS, np.zeros((4, 3))), LABELS)) == expected
    assert accuracy_metrics((LOGITS.tolist(), LABELS.tolist())) == expected


def test_ties_are_broken_towards_the_lower_class_index_like_argmax():
    flat = np.zeros((3, 7), dtype=np.float32)  # a dead model: every class ties
    assert accuracy_metrics((flat, np.array([0, 4, 5]))) == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}
    # Six classes tie for first place: top-5 holds the first five of them, 1..5, whatever the sort.
    plateau = np.tile(np.array([0, 1, 1, 1, 1, 1, 1, 0], dtype=np.float32), (3, 1))
    assert top_k_accuracy(plateau, np.array([5, 6, 5]), 5) == pytest.approx(2 / 3)
    for labels in (np.array([1, 2, 0]), np.array([0, 0, 0])):
        assert top_k_accuracy(plateau, labels, 1) == float((plateau.argmax(-1) == labels).mean())


def test_fewer_than_five_classes_makes_top5_trivially_one():
    logits = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    assert accuracy_metrics((logits, np.array([2, 1, 0]))) == {"top1": pytest.approx(1 / 3), "top5": 1.0}
    assert accuracy_metrics((logits[:, :1], np.array([0, 0, 0]))) == {"top1": 1.0, "top5": 1.0}
