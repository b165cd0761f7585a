"""Classification metrics from labels and predictions, with scikit-learn (no TensorFlow).

The engine calls :func:`classification_metrics` once per run and stores its output in
result.json; the report only reads those stored numbers. scikit-learn is imported inside
the functions that use it: the report and ``list`` do not need it.
"""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class (scikit-learn's convention)."""
    from sklearn import metrics as sk

    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    return sk.confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def per_class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """precision, recall, F1, support per class from a confusion matrix; 0 where undefined.

    scikit-learn's ``precision_recall_fscore_support(zero_division=0)``, fed the matrix as
    one weighted sample per cell (so a stored matrix needs no label arrays).
    """
    from sklearn import metrics as sk

    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    true, predicted = np.divmod(np.arange(n * n), n)
    precision, recall, f1, _ = sk.precision_recall_fscore_support(
        true, predicted, labels=np.arange(n), sample_weight=cm.ravel(), zero_division=0)
    support = cm.sum(axis=1)
    return precision, recall, f1, support.astype(np.int64)


def confused_pairs(cm: np.ndarray, class_names: list[str], top: int = 5) -> list[dict]:
    """The ``top`` largest off-diagonal cells: (true class, predicted class, count), largest first."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")
    out = []
    for flat in order[:top]:
        t, p = divmod(int(flat), cm.shape[1])
        if off[t, p] <= 0:
            break
        support = int(cm[t].sum())
        out.append({
            "true": t,
            "predicted": p,
            "true_name": class_names[t],
            "predicted_name": class_names[p],
            "count": int(off[t, p]),
            "share_of_true": round(float(off[t, p]) / support, 6) if support else 0.0,
        })
    return out


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Everything result.json stores about the test predictions."""
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n)
    precision, recall, f1, support = per_class_scores(cm)
    total = int(cm.sum())
    return {
        "accuracy": float(np.trace(cm)) / total if total else 0.0,
        "macro_f1": float(f1.mean()),
        "confusion": cm.astype(int).tolist(),
        "per_class": [
            {
                "label": i,
                "name": class_names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(n)
        ],
        "confused_pairs": confused_pairs(cm, class_names),
    }


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def diverged_epoch(history: dict[str, list]) -> int | None:
    """1-based first epoch whose training or test loss is NaN, infinite or missing (None if none is)."""
    loss, val = list(history.get("loss", [])), list(history.get("val_loss", []))
    n = min(len(loss), len(val))
    return next((i + 1 for i in range(n) if not (_finite(loss[i]) and _finite(val[i]))), None)


def learning_curve_facts(history: dict[str, list]) -> dict:
    """Over-fitting facts from the per-epoch curves (val_* = the test set, as in the lab).

    Computed on the epochs before any divergence (NaN/inf/None); epochs_run counts every
    recorded epoch. best_epoch: 1-based epoch of the minimum test loss; final_gap: test
    loss - train loss at the last epoch; cross_epoch: first epoch where the test loss
    rises above the training loss and stays there (None if it never does).
    """
    epochs_run = len(history.get("loss", []))
    broke = diverged_epoch(history)
    loss = list(history.get("loss", []))
    val = list(history.get("val_loss", []))
    n = min(len(loss), len(val)) if broke is None else broke - 1
    if n == 0:
        return {"epochs_run": epochs_run, "best_epoch": None, "min_test_loss": None, "final_gap": None,
                "cross_epoch": None, "test_loss_rise": None}
    loss, val = loss[:n], val[:n]
    best = int(np.argmin(val))
    cross = None
    for i in range(n):
        if all(val[j] > loss[j] for j in range(i, n)):
            cross = i + 1
            break
    return {
        "epochs_run": epochs_run,
        "best_epoch": best + 1,
        "min_test_loss": float(val[best]),
        "final_gap": float(val[-1] - loss[-1]),
        "cross_epoch": cross,
        "test_loss_rise": float(val[-1] - val[best]),
    }
