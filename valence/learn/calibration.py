"""Calibrated P(Positive): a beta calibration map fit on the folds' out-of-fold predictions, and how to measure it.

The map (Kull, Silva Filho and Flach 2017) sends a probability p to sigmoid(a · ln p − b · ln(1 − p) + c), fit by
an unpenalised logistic regression on the two columns ln p and −ln(1 − p) of out-of-fold predictions, as
scikit-learn's CalibratedClassifierCV(ensemble=False) fits its map on cross-validated predictions and applies it
to the model fit on everything. With a = b it is Platt scaling (sigmoid(a · logit p + c)); the second parameter
lets the two ends bend apart. On OASIS they do: the combined score is too sure of its most positive photos and
not sure enough of its negative ones, and a Platt map, which can only stretch both ends alike, left the
out-of-fold ECE at 0.061, above what chance gives perfectly calibrated probabilities there (docs/model-card.md:
Calibrated probabilities; benchmarks/calibration_maps.py compares the maps). a and b are kept ≥ 0 (a negative
one is dropped and the other refit, as the paper does), so the map is increasing and keeps every ranking (ROC
AUC). It is one more map of the P(Positive) head (``heads.calibrated``), so model.keras, model.tflite,
`valence predict` and the page all give calibrated probabilities with no extra file. Its own effect is measured
by cross-fitting: each fold's predictions are mapped by the map fit on the other folds' (``cross_fitted``), and
``null_ece`` says how large the ECE of those probabilities gets by chance alone.
"""
import numpy as np

from valence.learn.heads import NO_CALIBRATION, calibrated_logit, logit, stack

IDENTITY = NO_CALIBRATION  # (a, b, c) of no calibration
NULL_DRAWS = 4000  # label sets drawn for the ECE's chance distribution: its 95th percentile to ±0.001 on OASIS


def _columns(probability):
    z = logit(probability)
    return [-np.logaddexp(0, -z), np.logaddexp(0, z)]  # ln p and −ln(1 − p), from the clipped logit


def fit(y_true, probability):
    """(a, b, c) of the beta map from ``probability`` to the labels ``y_true`` (0/1), a and b at least 0."""
    columns = _columns(probability)
    (a, b), c = stack(y_true, columns)
    if min(a, b) < 0:  # an end the labels would turn backwards: drop it, refit the other (the map stays increasing)
        keep = int(b > a)
        (weight,), c = stack(y_true, [columns[keep]])
        a, b = (max(weight, 0.0), 0.0) if keep == 0 else (0.0, max(weight, 0.0))
    return a, b, c


def apply(mapping, probability):
    return 1 / (1 + np.exp(-calibrated_logit(logit(probability), mapping)))


def cross_fitted(y_true, probability, folds):
    """Each fold's probabilities mapped by the map fit on the other folds' (an honest measure of the map fit on
    all of them): (calibrated probabilities, {fold: (a, b, c)})."""
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


def null_ece(y_true, probability, seed, draws=NULL_DRAWS, bins=10):
    """The observed ECE against its chance distribution: labels drawn from ``probability`` itself are perfectly
    calibrated by construction, yet their ECE is not 0 on a finite set. {"ece", "null_median", "null_p95",
    "p_value": the share of draws at or above the observed ECE}: below the p95, the gap is within noise. The same
    probabilities in any order give the same draws."""
    ece = expected_calibration_error(y_true, probability, bins)
    probability = np.sort(np.asarray(probability, dtype=np.float64))  # in order: the draws do not hang on the rows'
    rng = np.random.default_rng(seed)
    in_bin = np.eye(bins)[np.minimum((probability * bins).astype(int), bins - 1)]  # (images, bins) one-hot
    predicted, null = probability @ in_bin, []
    for start in range(0, draws, 250):  # 250 label sets at a time: memory stays flat on large sets
        drawn = rng.random((min(250, draws - start), len(probability))) < probability
        null.append(np.abs(predicted - drawn @ in_bin).sum(axis=1) / len(probability))  # the binned gaps
    null = np.concatenate(null)
    return {"ece": round(ece, 6), "null_median": round(float(np.median(null)), 6),
            "null_p95": round(float(np.quantile(null, 0.95)), 6),
            "p_value": round(float((null >= ece - 1e-12).mean()), 6)}
