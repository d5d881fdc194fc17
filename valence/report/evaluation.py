"""Scores of a binary classifier, all computed by scikit-learn (dvclive writes the curve data)."""
import numpy as np
from sklearn import metrics

from valence.data.labels import CLASSES, label_of


def binary_metrics(y_true, probability, threshold):
    """The headline scores of one split, and the always-the-larger-class baseline to read them against."""
    y_true, probability, y_pred = _arrays(y_true, probability, threshold)
    both_classes = len(np.unique(y_true)) == 2
    positive_share = float(y_true.mean())
    return _plain({
        "roc_auc": metrics.roc_auc_score(y_true, probability) if both_classes else None,
        "balanced_accuracy": metrics.balanced_accuracy_score(y_true, y_pred),
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "average_precision": metrics.average_precision_score(y_true, probability) if both_classes else None,
        "majority_accuracy": max(positive_share, 1 - positive_share),
    })


def out_of_fold(y_true, probability, folds, threshold, valence=None):
    """The headline of out-of-fold predictions (each image scored by the model of the fold that held it out):
    ``binary_metrics`` over all images, each metric's mean and std over the folds with each fold's ROC AUC
    (``folds``), and — where ``valence``
    (rated valence per image, None where unrated) is given — Spearman's ρ between P(Positive) and the rating.
    """
    from scipy.stats import spearmanr

    y_true, probability, folds = np.asarray(y_true, dtype=int), np.asarray(probability, dtype=float), np.asarray(folds)
    each = {k: binary_metrics(y_true[folds == k], probability[folds == k], threshold) for k in sorted(set(folds.tolist()))}
    summary = {m: {"mean": np.mean([f[m] for f in each.values()]), "std": np.std([f[m] for f in each.values()])}
               for m in ("roc_auc", "balanced_accuracy", "average_precision", "accuracy")}
    result = {**binary_metrics(y_true, probability, threshold),
              "folds": {**summary, "roc_auc_each": {f"fold{k}": f["roc_auc"] for k, f in each.items()}}}
    rated = [(p, float(v)) for p, v in zip(probability, valence if valence is not None else []) if v not in (None, "")]
    if len(rated) > 2:
        result["spearman_valence"] = spearmanr(*zip(*rated)).statistic
    return _plain(result)


def balanced_threshold(y_true, probability):
    """The threshold on P(Positive) with the highest balanced accuracy on these images (the ROC curve's point
    farthest above the diagonal; ties: the one nearest 0.5)."""
    fpr, tpr, thresholds = metrics.roc_curve(np.asarray(y_true, dtype=int), np.asarray(probability, dtype=float))
    finite = np.isfinite(thresholds)  # scikit-learn's first threshold is +inf: call nothing Positive
    score = (tpr - fpr)[finite]
    best = np.flatnonzero(score == score.max())
    return float(thresholds[finite][best[np.argmin(np.abs(thresholds[finite][best] - 0.5))]])


def per_class(y_true, probability, threshold):
    """Image count, threshold, and each class's precision/recall/f1/support."""
    y_true, probability, y_pred = _arrays(y_true, probability, threshold)
    report = metrics.classification_report(y_true, y_pred, labels=[0, 1], target_names=list(CLASSES),
                                           output_dict=True, zero_division=0)
    result = {"images": len(y_true), "threshold": threshold}
    for name in CLASSES:
        result[name] = {key.replace("-score", ""): report[name][key]
                        for key in ("precision", "recall", "f1-score", "support")}
        result[name]["support"] = int(result[name]["support"])  # a count; recent scikit-learn reports it as a float
    return _plain(result)


def _arrays(y_true, probability, threshold):
    probability = np.asarray(probability, dtype=float)
    return np.asarray(y_true, dtype=int), probability, (probability >= threshold).astype(int)


def _plain(value):
    """NumPy scalars → Python numbers rounded to 6 digits, so the JSON diffs cleanly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def prediction_rows(paths, y_true, probability, threshold):
    """One row per image: actual and predicted class names, P(Positive)."""
    return [{"path": path, "actual": CLASSES[int(t)], "predicted": label_of(p, threshold),
             "probability": _plain(p)} for path, t, p in zip(paths, y_true, probability)]


def confusion(y_true, probability, threshold):
    """2×2 counts, rows actual, columns predicted, in CLASSES order."""
    y_true, _, y_pred = _arrays(y_true, probability, threshold)
    return metrics.confusion_matrix(y_true, y_pred, labels=[0, 1])
