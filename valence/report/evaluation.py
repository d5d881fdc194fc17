"""Scores of a binary classifier, all computed by scikit-learn (dvclive writes the curve data), and of the
rating heads' predictions against the raters' means (scipy)."""
from pathlib import Path

import numpy as np
from sklearn import metrics

from valence.config import (CLASSIFIER_PROBABILITY, FOLDS, OOF, PHOTO_LINE, PHOTO_SCORE, PREDICTIONS_CSV,
                            PROBABILITY, predicted_column)
from valence.data.folds import FOLD_COLUMNS
from valence.data.labels import CLASSES, RATINGS, label_of
from valence.errors import PipelineError
from valence.files import read_csv


def binary_metrics(y_true, probability, threshold, ranking=None):
    """The headline scores of one split, and the always-the-larger-class baseline to read them against.

    ROC AUC and average precision only rank the images: they are computed on ``ranking`` where given (scores
    that order the images as ``probability`` would under one increasing map), the rest on ``probability``:
    accuracy and balanced accuracy at ``threshold``, Brier score and expected calibration error (10 bins)."""
    from valence.learn.calibration import expected_calibration_error

    y_true, probability, y_pred = _arrays(y_true, probability, threshold)
    ranking = probability if ranking is None else np.asarray(ranking, dtype=float)
    both_classes = len(np.unique(y_true)) == 2
    positive_share = float(y_true.mean())
    return _plain({
        "roc_auc": metrics.roc_auc_score(y_true, ranking) if both_classes else None,
        "balanced_accuracy": metrics.balanced_accuracy_score(y_true, y_pred),
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "average_precision": metrics.average_precision_score(y_true, ranking) if both_classes else None,
        "majority_accuracy": max(positive_share, 1 - positive_share),
        "brier": metrics.brier_score_loss(y_true, probability, pos_label=1),
        "ece": expected_calibration_error(y_true, probability),
    })


def out_of_fold(y_true, probability, folds, threshold, valence=None, ranking=None):
    """The headline of out-of-fold predictions (each image scored by the model of the fold that held it out):
    ``binary_metrics`` over all images, each metric's mean and std over the folds with each fold's ROC AUC
    (``folds``), and — where ``valence`` (rated valence per image, None where unrated) is given — Spearman's ρ
    between the ranking scores (``ranking``, else P(Positive)) and the rating.
    """
    from scipy.stats import spearmanr

    y_true, probability, folds = np.asarray(y_true, dtype=int), np.asarray(probability, dtype=float), np.asarray(folds)
    ranking = probability if ranking is None else np.asarray(ranking, dtype=float)
    each = {k: binary_metrics(y_true[folds == k], probability[folds == k], threshold, ranking[folds == k])
            for k in sorted(set(folds.tolist()))}
    summary = {m: {"mean": np.mean([f[m] for f in each.values()]), "std": np.std([f[m] for f in each.values()])}
               for m in ("roc_auc", "balanced_accuracy", "average_precision", "accuracy")}
    result = {**binary_metrics(y_true, probability, threshold, ranking),
              "folds": {**summary, "roc_auc_each": {f"fold{k}": f["roc_auc"] for k, f in each.items()}}}
    rated = [(p, float(v)) for p, v in zip(ranking, valence if valence is not None else []) if v not in (None, "")]
    if len(rated) > 2:
        result["spearman_valence"] = spearmanr(*zip(*rated)).statistic
    return _plain(result)


def rating_scores(rated, predicted, folds):
    """How well predicted ratings follow the rated ones, out of fold: Pearson's r, Spearman's ρ and the mean
    absolute error (on the rating's scale) over every image, and r's mean and std over the folds with each
    fold's r (folds of 3 or more images; no spread without any). Images without a rating or a prediction (NaN)
    are left out; None when fewer than 3 remain."""
    from scipy.stats import pearsonr, spearmanr

    rated, predicted, folds = np.asarray(rated, float), np.asarray(predicted, float), np.asarray(folds)
    both = ~np.isnan(rated) & ~np.isnan(predicted)
    if both.sum() < 3:
        return None
    rated, predicted, folds = rated[both], predicted[both], folds[both]
    each = {f"fold{k}": pearsonr(predicted[folds == k], rated[folds == k]).statistic
            for k in sorted(set(folds.tolist())) if (folds == k).sum() > 2}
    spread = {"mean": np.mean(list(each.values())), "std": np.std(list(each.values()))} if each else None
    return _plain({"pearson_r": pearsonr(predicted, rated).statistic, "spearman": spearmanr(predicted, rated).statistic,
                   "mae": np.abs(predicted - rated).mean(), "images": int(both.sum()),
                   "folds": {"pearson_r": spread, "pearson_r_each": each}})


def photo_check_scores(photo_scores, non_photos, threshold):
    """The photo check out of fold: of the labelled photos (``photo_scores``, the photo score from the fold that
    held each out), the share and number flagged (below PHOTO_LINE, 0.5, where the heads put P(photo) =
    ``threshold``, evaluate.photo_threshold); of the generated non-photos (``non_photos``, rows with kind and
    photo_score from a check that never saw their kind), the share of each kind flagged and the least of them.
    None when nothing was scored (no photo check)."""
    photo_scores = np.asarray(photo_scores, float)
    if not len(photo_scores) or np.isnan(photo_scores).any() or not non_photos:
        return None
    kinds = {}
    for r in non_photos:
        kinds.setdefault(r["kind"], []).append(float(r[PHOTO_SCORE]) < PHOTO_LINE)
    flagged = {kind: float(np.mean(values)) for kind, values in kinds.items()}
    return _plain({"threshold": threshold, "photos": len(photo_scores), "photos_flagged": int((photo_scores < PHOTO_LINE).sum()),
                   "photos_flagged_share": float(np.mean(photo_scores < PHOTO_LINE)), "kinds_flagged": flagged,
                   "kinds_flagged_least": min(flagged.values())})


def balanced_threshold(y_true, probability):
    """The threshold on P(Positive) with the highest balanced accuracy on these images (the ROC curve's point
    farthest above the diagonal; ties: the one nearest 0.5)."""
    fpr, tpr, thresholds = metrics.roc_curve(np.asarray(y_true, dtype=int), np.asarray(probability, dtype=float))
    finite = np.isfinite(thresholds)  # scikit-learn's first threshold is +inf: call nothing Positive
    score = (tpr - fpr)[finite]
    best = np.flatnonzero(score == score.max())
    return float(thresholds[finite][best[np.argmin(np.abs(thresholds[finite][best] - 0.5))]])


COVERAGES = (0.5, 0.8, 1.0)  # the shares of photos, most confident first, whose accuracy evaluate reports
BAND_LIFT = 0.05  # the accuracy gain on the photos left labelled that ``narrowest_band`` asks of a band


def selective(y_true, probability, threshold, points=100):
    """Selective classification: the photos ordered by confidence, |P(Positive) − threshold| (most confident
    first), and the accuracy of the most confident share. ({f"accuracy_at_{50, 80, 100}": …}, ``points`` curve rows
    {"coverage", "accuracy"} at coverage 1 / points … 1): how accurate the model is where it is surest."""
    y_true, probability, y_pred = _arrays(y_true, probability, threshold)
    order = np.argsort(-np.abs(probability - threshold), kind="stable")
    accuracy = np.cumsum(y_pred[order] == y_true[order]) / np.arange(1, len(order) + 1)
    at = lambda share: float(accuracy[max(int(np.ceil(share * len(order))), 1) - 1])  # noqa: E731
    return (_plain({f"accuracy_at_{round(share * 100)}": at(share) for share in COVERAGES}),
            [_plain({"coverage": k / points, "accuracy": at(k / points)}) for k in range(1, points + 1)])


def uncertain_scores(y_true, probability, threshold, band):
    """What evaluate.uncertain_band costs and buys: the band, the share of photos it calls Uncertain, the
    accuracy of the rest against that of all photos."""
    y_true, probability, y_pred = _arrays(y_true, probability, threshold)
    kept = np.abs(probability - threshold) >= band
    return _plain({"band": band, "uncertain_share": 1 - kept.mean(), "accuracy_all": np.mean(y_pred == y_true),
                   "accuracy_labelled": np.mean(y_pred[kept] == y_true[kept]) if kept.any() else None})


def narrowest_band(y_true, probability, threshold, lift=BAND_LIFT, step=0.01):
    """The narrowest band (a multiple of ``step``) whose photos left labelled are ``lift`` more accurate than all
    of them; None if no band below 0.5 does."""
    for band in np.arange(0, 0.5, step).round(6):
        scores = uncertain_scores(y_true, probability, threshold, band)
        if scores["accuracy_labelled"] is not None and scores["accuracy_labelled"] >= scores["accuracy_all"] + lift:
            return float(band)
    return None


def band_cross_fitted(y_true, probability, folds, threshold, lift=BAND_LIFT):
    """``narrowest_band``'s rule measured honestly: each fold's photos get the band chosen on the other folds'.
    {"bands": {fold: band}, "uncertain_share", "accuracy_labelled", "accuracy_all"} over all photos."""
    y_true, probability, folds = np.asarray(y_true, dtype=int), np.asarray(probability, float), np.asarray(folds)
    bands, kept = {}, np.ones(len(y_true), bool)
    for fold in sorted(set(folds.tolist())):
        band = narrowest_band(y_true[folds != fold], probability[folds != fold], threshold, lift) or 0.0
        bands[f"fold{fold}"] = band
        kept[folds == fold] = np.abs(probability[folds == fold] - threshold) >= band
    right = (probability >= threshold).astype(int) == y_true
    return _plain({"bands": bands, "uncertain_share": 1 - kept.mean(),
                   "accuracy_labelled": right[kept].mean() if kept.any() else None,
                   "accuracy_all": right.mean()})


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
             PROBABILITY: _plain(p)} for path, t, p in zip(paths, y_true, probability)]


def confusion(y_true, probability, threshold):
    """2×2 counts, rows actual, columns predicted, in CLASSES order."""
    y_true, _, y_pred = _arrays(y_true, probability, threshold)
    return metrics.confusion_matrix(y_true, y_pred, labels=[0, 1])


def out_of_fold_rows(labelled, oof=OOF):
    """The fold stages' predictions (``oof``/fold*/predictions.csv) in ``labelled``'s order, each row with its
    float P(Positive), the classifier's own, the photo score and predicted ratings (NaN where none); a one-line
    PipelineError unless every image was scored exactly once, in its own fold."""
    files = sorted(Path(oof).glob(f"fold*/{PREDICTIONS_CSV}"))
    predicted = {}
    for file in files:
        for r in read_csv(file, required=FOLD_COLUMNS + [PROBABILITY, CLASSIFIER_PROBABILITY]):
            if r["path"] in predicted:
                raise PipelineError(f"{file}: {r['path']} was already scored by {predicted[r['path']]['file']}")
            predicted[r["path"]] = {**r, "file": file}
    missing = [r for r in labelled if r["path"] not in predicted]
    if missing:
        folds = sorted({r["fold"] for r in missing}, key=int)
        raise PipelineError(f"{oof}: no out-of-fold prediction for {len(missing)} labelled image(s) of fold(s) "
                            f"{', '.join(folds)} (first {missing[0]['path']}); dvc.yaml's fold matrix must list "
                            "every fold split.test_size makes (round(1 / test_size))")
    for r in labelled:
        if predicted[r["path"]]["fold"] != r["fold"]:
            raise PipelineError(f"{predicted[r['path']]['file']}: {r['path']} is in fold {r['fold']} of "
                                f"{FOLDS}; run the fold stages again (dvc repro)")
    extra = predicted.keys() - {r["path"] for r in labelled}
    if extra:
        raise PipelineError(f"{oof}: {len(extra)} prediction(s) of images not in {FOLDS} "
                            f"(first {sorted(extra)[0]}); run the fold stages again (dvc repro)")
    columns = [PROBABILITY, CLASSIFIER_PROBABILITY, PHOTO_SCORE, *map(predicted_column, RATINGS)]
    try:
        return [{**r, **{column: float(predicted[r["path"]].get(column) or "nan") for column in columns}}
                for r in labelled]
    except ValueError:
        raise PipelineError(f"{oof}: a probability is not a number; run the fold stages again (dvc repro)") from None
