"""Calibrated P(Positive): Platt scaling of the fold models' out-of-fold predictions, and how to measure it.

The heads weigh the classes as balanced, so on OASIS their probabilities run low (out of fold: mean 0.595 against
a base rate of 0.657). Platt scaling maps a probability p to sigmoid(slope · logit(p) + intercept), fit by
logistic regression on out-of-fold predictions — as scikit-learn's CalibratedClassifierCV(ensemble=False) fits
its map on cross-validated predictions and applies it to the model fit on everything. One increasing map keeps
every ranking (ROC AUC) and, being affine in the logit, is one more map of the P(Positive) head (heads.affine), so model.keras, model.tflite,
`valence predict` and the page all give calibrated probabilities with no extra file. Its own effect is measured
by cross-fitting: each fold's predictions are mapped by the map fit on the other folds' (``cross_fitted``).
"""
import numpy as np

from valence.learn.heads import logit, stack

IDENTITY = (1.0, 0.0)  # (slope, intercept) of no calibration


def fit(y_true, probability):
    """(slope, intercept) of the Platt map from ``probability`` to the labels ``y_true`` (0/1): an unpenalised
    logistic regression on the logit (``heads.affine`` applies it to a head)."""
    (slope,), intercept = stack(y_true, [logit(probability)])
    return slope, intercept


def apply(mapping, probability):
    slope, intercept = mapping
    return 1 / (1 + np.exp(-(slope * logit(probability) + intercept)))


def cross_fitted(y_true, probability, folds):
    """Each fold's probabilities mapped by the Platt map fit on the other folds' (an honest measure of the map
    fit on all of them): (calibrated probabilities, {fold: (slope, intercept)})."""
    y_true, probability, folds = np.asarray(y_true), np.asarray(probability), np.asarray(folds)
    calibrated, maps = np.zeros(len(probability)), {}
    for fold in np.unique(folds):
        maps[int(fold)] = fit(y_true[folds != fold], probability[folds != fold])
        calibrated[folds == fold] = apply(maps[int(fold)], probability[folds == fold])
    return calibrated, maps


def reliability(y_true, probability, bins=10):
    """Rows of equal-width bins of P(Positive) that hold images: bin (its lower edge), images, mean predicted
    probability, fraction actually Positive."""
    y_true, probability = np.asarray(y_true), np.asarray(probability)
    index = np.minimum((probability * bins).astype(int), bins - 1)
    return [{"bin": round(b / bins, 6), "images": int((index == b).sum()),
             "predicted": float(probability[index == b].mean()), "observed": float(y_true[index == b].mean())}
            for b in range(bins) if (index == b).any()]


def expected_calibration_error(y_true, probability, bins=10):
    """The images-weighted mean gap between predicted and observed P(Positive) over ``bins`` equal-width bins."""
    return gap_of(reliability(y_true, probability, bins))


def gap_of(rows):
    """The expected calibration error of ``reliability`` rows."""
    return sum(r["images"] * abs(r["predicted"] - r["observed"]) for r in rows) / sum(r["images"] for r in rows)
