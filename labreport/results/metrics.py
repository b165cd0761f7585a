"""Classification metrics from labels and predictions (pure numpy, no TensorFlow).

The engine calls :func:`classification_metrics` once per run and stores its output in
result.json; the report only reads those stored numbers.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class (scikit-learn's convention)."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def per_class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """precision, recall, F1, support per class; 0 where undefined (sklearn's zero_division=0)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
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


def learning_curve_facts(history: dict[str, list[float]]) -> dict:
    """Over-fitting facts from the per-epoch curves (val_* = the test set, as in the lab).

    best_epoch: 1-based epoch of the minimum test loss; final_gap: test loss - train loss
    at the last epoch; cross_epoch: first epoch where the test loss rises above the
    training loss and stays there (None if it never does).
    """
    loss = list(history.get("loss", []))
    val = list(history.get("val_loss", []))
    n = min(len(loss), len(val))
    if n == 0:
        return {"epochs_run": 0, "best_epoch": None, "min_test_loss": None, "final_gap": None,
                "cross_epoch": None, "test_loss_rise": None}
    loss, val = loss[:n], val[:n]
    best = int(np.argmin(val))
    cross = None
    for i in range(n):
        if all(val[j] > loss[j] for j in range(i, n)):
            cross = i + 1
            break
    return {
        "epochs_run": n,
        "best_epoch": best + 1,
        "min_test_loss": float(val[best]),
        "final_gap": float(val[-1] - loss[-1]),
        "cross_epoch": cross,
        "test_loss_rise": float(val[-1] - val[best]),
    }
