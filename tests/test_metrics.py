"""metrics: scikit-learn's confusion matrix and scores give the numbers the numpy code gave.

``numpy_scores`` is the implementation labreport used before scikit-learn (kept here as
the reference): the confusion matrix, precision, recall and support are bit-identical;
scikit-learn computes F1 as 2tp / (2tp + fp + fn) rather than 2PR / (P + R), equal to
within one rounding step of a float64 (never visible at the printed 4 decimals).
"""

from __future__ import annotations

import numpy as np
import pytest

from labreport.results import metrics

ULP = 4.5e-16  # two float64 rounding steps near 1


def numpy_confusion(y_true, y_pred, n):
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def numpy_scores(cm):
    cm = np.asarray(cm, dtype=np.float64)
    tp, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, support.astype(np.int64)


def predictions(seed: int, n: int = 10_000):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    p = np.where(rng.random(n) < rng.uniform(0.05, 0.999), y, rng.integers(0, 10, n))
    if seed % 3 == 0:
        p[p == 3] = 4  # a class never predicted: precision 0 by zero_division
    if seed % 5 == 0:
        y[y == 5], p[p == 5] = 6, 6  # a class absent from the test set: recall and F1 0
    return y, p


@pytest.mark.parametrize("seed", range(40))
def test_scikit_learn_gives_todays_numbers(seed):
    y, p = predictions(seed)
    cm = metrics.confusion_matrix(y, p, 10)
    assert cm.dtype == np.int64 and np.array_equal(cm, numpy_confusion(y, p, 10))
    precision, recall, f1, support = metrics.per_class_scores(cm)
    old_precision, old_recall, old_f1, old_support = numpy_scores(cm)
    assert np.array_equal(precision, old_precision) and np.array_equal(recall, old_recall)
    assert np.array_equal(support, old_support) and support.dtype == np.int64
    assert np.abs(f1 - old_f1).max() <= ULP
    stored = metrics.classification_metrics(y, p, [str(i) for i in range(10)])
    assert stored["confusion"] == cm.tolist()
    assert stored["accuracy"] == float(np.trace(cm)) / len(y)
    assert abs(stored["macro_f1"] - float(old_f1.mean())) <= ULP
    assert f"{stored['macro_f1']:.6f}" == f"{float(old_f1.mean()):.6f}"


def test_scores_of_a_stored_matrix_need_no_labels():
    cm = [[5, 1, 0], [0, 0, 0], [2, 0, 3]]  # class 1 neither present nor predicted
    precision, recall, f1, support = metrics.per_class_scores(cm)
    assert precision.tolist() == [5 / 7, 0.0, 1.0]
    assert recall.tolist() == [5 / 6, 0.0, 3 / 5]
    assert support.tolist() == [6, 0, 5]
    assert f1[1] == 0.0 and f1[2] == pytest.approx(0.75)


def test_mismatched_label_arrays_are_refused():
    with pytest.raises(ValueError, match="y_true has 3 labels but y_pred has 2"):
        metrics.confusion_matrix(np.array([1, 2, 3]), np.array([1, 2]), 10)
