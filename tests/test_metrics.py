"""Top-1 / top-5 accuracy: values worked out by hand, ties, few classes, with and without ``evaluate``."""

import logging
import sys

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_cakd import metrics
from hf_cakd.metrics import _evaluate_accuracy, accuracy_metrics, top_k_accuracy

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


@pytest.fixture(autouse=True)
def fresh_metric_cache():
    """``_evaluate_accuracy`` is cached for the process: every test starts and ends without a cached metric."""
    _evaluate_accuracy.cache_clear()
    yield
    _evaluate_accuracy.cache_clear()


@pytest.fixture
def offline_evaluate(monkeypatch):
    """``evaluate.load`` failing as it does offline; returns the list of names it was asked for."""
    evaluate = pytest.importorskip("evaluate")
    requested = []

    def failing_load(name, *args, **kwargs):
        requested.append(name)
        raise FileNotFoundError(f"Couldn't find a module script for {name!r} (offline)")

    monkeypatch.setattr(evaluate, "load", failing_load)
    return requested


class FakeAccuracy:
    """What ``evaluate.load("accuracy")`` returns: ``compute(predictions=, references=)``."""

    def __init__(self):
        self.calls = []

    def compute(self, *, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        self.calls.append((predictions, references))
        return {"accuracy": float((predictions == references).mean())}


def test_hand_computed_top1_and_top5(offline_evaluate):
    assert accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
    assert top_k_accuracy(LOGITS, LABELS, 3) == 0.5  # rows 0 and 1
    assert top_k_accuracy(LOGITS, LABELS, 6) == 0.75  # row 3's label is 6th
    assert top_k_accuracy(LOGITS, LABELS, 7) == 1.0


def test_accepts_eval_predictions_and_tuple_logits(offline_evaluate):
    expected = {"top1": 0.25, "top5": 0.5}
    assert accuracy_metrics(EvalPrediction(predictions=LOGITS, label_ids=LABELS)) == expected
    # A model returning several outputs gives the Trainer a tuple; the logits come first.
    assert accuracy_metrics(((LOGITS, np.zeros((4, 3))), LABELS)) == expected
    assert accuracy_metrics((LOGITS.tolist(), LABELS.tolist())) == expected


def test_ties_are_broken_towards_the_lower_class_index_like_argmax(offline_evaluate):
    flat = np.zeros((3, 7), dtype=np.float32)  # a dead model: every class ties
    assert accuracy_metrics((flat, np.array([0, 4, 5]))) == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}
    # Six classes tie for first place: top-5 holds the first five of them, 1..5, whatever the sort.
    plateau = np.tile(np.array([0, 1, 1, 1, 1, 1, 1, 0], dtype=np.float32), (3, 1))
    assert top_k_accuracy(plateau, np.array([5, 6, 5]), 5) == pytest.approx(2 / 3)
    for labels in (np.array([1, 2, 0]), np.array([0, 0, 0])):
        assert top_k_accuracy(plateau, labels, 1) == float((plateau.argmax(-1) == labels).mean())


def test_fewer_than_five_classes_makes_top5_trivially_one(offline_evaluate):
    logits = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    assert accuracy_metrics((logits, np.array([2, 1, 0]))) == {"top1": pytest.approx(1 / 3), "top5": 1.0}
    assert accuracy_metrics((logits[:, :1], np.array([0, 0, 0]))) == {"top1": 1.0, "top5": 1.0}


def test_offline_evaluate_falls_back_to_local_accuracy_once(offline_evaluate, caplog):
    with caplog.at_level(logging.INFO, logger="hf_cakd.metrics"):
        assert accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
        assert accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
    assert _evaluate_accuracy() is None
    assert offline_evaluate == ["accuracy"]  # tried once, then the answer is cached
    assert any("computing accuracy locally" in r.getMessage() for r in caplog.records)


def test_without_evaluate_installed_accuracy_is_local(monkeypatch):
    monkeypatch.setitem(sys.modules, "evaluate", None)  # import evaluate -> ImportError
    assert accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
    assert _evaluate_accuracy() is None


def test_evaluate_metric_when_available_gives_the_same_numbers(monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    fake = FakeAccuracy()
    monkeypatch.setattr(evaluate, "load", lambda name, *args, **kwargs: fake)
    assert accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
    (predictions, references), = fake.calls
    np.testing.assert_array_equal(predictions, LOGITS.argmax(-1))
    np.testing.assert_array_equal(references, LABELS)


def test_whatever_the_real_evaluate_does_here_the_numbers_agree():
    """Offline (conftest) the real ``evaluate.load`` fails or finds a cached script; both give the same top-1."""
    pytest.importorskip("evaluate")
    assert metrics.accuracy_metrics((LOGITS, LABELS)) == {"top1": 0.25, "top5": 0.5}
