"""Scores and curve data for a binary classifier, all computed by scikit-learn."""
import numpy as np
from sklearn import metrics

from valence.labels import CLASSES, label_of


def binary_metrics(y_true, probability, threshold, split="test"):
    """Headline metrics, per-class precision/recall/f1/support and the always-the-larger-class baseline.

    ``split`` names the image count: n_test, n_train.
    """
    y_true = np.asarray(y_true, dtype=int)
    probability = np.asarray(probability, dtype=float)
    y_pred = (probability >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    report = metrics.classification_report(y_true, y_pred, labels=[0, 1], target_names=list(CLASSES),
                                           output_dict=True, zero_division=0)
    positive_share = float(y_true.mean())
    result = {
        f"n_{split}": int(len(y_true)),
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "balanced_accuracy": metrics.balanced_accuracy_score(y_true, y_pred),
        "roc_auc": metrics.roc_auc_score(y_true, probability) if both_classes else None,
        "average_precision": metrics.average_precision_score(y_true, probability) if both_classes else None,
        "majority_accuracy": max(positive_share, 1 - positive_share),
        "threshold": threshold,
    }
    for name in CLASSES:
        result[name] = {key.replace("-score", ""): report[name][key]
                        for key in ("precision", "recall", "f1-score", "support")}
        result[name]["support"] = int(result[name]["support"])  # a count; recent scikit-learn reports it as a float
    return _plain(result)


def _plain(value):
    """NumPy scalars → Python numbers rounded to 6 digits, so the JSON diffs cleanly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def roc_points(y_true, probability):
    """ROC curve rows (fpr, tpr, threshold); sklearn's leading +inf threshold is written as 1."""
    fpr, tpr, thresholds = metrics.roc_curve(y_true, probability)
    return [{"fpr": _plain(f), "tpr": _plain(t), "threshold": _plain(min(th, 1.0))}
            for f, t, th in zip(fpr, tpr, thresholds)]


def precision_recall_points(y_true, probability):
    """Precision–recall curve rows (recall, precision, threshold); the last point has no threshold."""
    precision, recall, thresholds = metrics.precision_recall_curve(y_true, probability)
    thresholds = np.append(thresholds, 1.0)
    return [{"recall": _plain(r), "precision": _plain(p), "threshold": _plain(t)}
            for r, p, t in zip(recall, precision, thresholds)]


def prediction_rows(paths, y_true, probability, threshold):
    """One row per image for DVC's confusion templates: actual and predicted class names."""
    return [{"path": path, "actual": CLASSES[int(t)], "predicted": label_of(p, threshold),
             "probability": _plain(p)} for path, t, p in zip(paths, y_true, probability)]


def confusion(y_true, probability, threshold):
    """2×2 counts, rows actual, columns predicted, in CLASSES order."""
    y_pred = (np.asarray(probability) >= threshold).astype(int)
    return metrics.confusion_matrix(np.asarray(y_true, dtype=int), y_pred, labels=[0, 1])
