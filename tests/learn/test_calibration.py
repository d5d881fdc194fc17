import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from valence.learn import calibration


def shifted(n=4000, seed=0, shift=-0.8):
    """Labels drawn from known probabilities, and a score that reports them shifted low on the logit scale, as
    balanced class weights do to a 2:1 Positive set."""
    rng = np.random.default_rng(seed)
    truth = 1 / (1 + np.exp(-rng.normal(0.7, 1.5, n)))
    y = (rng.random(n) < truth).astype(int)
    return y, calibration.apply((1.0, shift), truth), truth


def test_platt_undoes_a_shift_of_the_logit_and_keeps_the_ranking():
    y, low, truth = shifted()
    slope, intercept = calibration.fit(y, low)
    assert slope == pytest.approx(1.0, abs=0.1) and intercept == pytest.approx(0.8, abs=0.12)
    calibrated = calibration.apply((slope, intercept), low)
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, low), abs=1e-12)
    before, after = (calibration.expected_calibration_error(y, p) for p in (low, calibrated))
    assert after < 0.03 < before and abs(calibrated.mean() - y.mean()) < 0.02


def test_expected_calibration_error_is_the_weighted_gap_of_the_bins():
    y = np.array([0, 1, 1, 1, 0, 0])
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.45])  # bins 0 (2 images), 9 (2), 5 (1), 4 (1)
    rows = calibration.reliability(y, p)
    assert [(r["bin"], r["images"]) for r in rows] == [(0.0, 2), (0.4, 1), (0.5, 1), (0.9, 2)]
    assert rows[0]["observed"] == 0.5 and rows[-1]["predicted"] == pytest.approx(0.95)
    gaps = 2 * 0.45 + 1 * 0.45 + 1 * 0.55 + 2 * 0.05
    assert calibration.expected_calibration_error(y, p) == pytest.approx(gaps / 6)


def test_cross_fitting_maps_each_fold_by_the_other_folds_only():
    y, low, _ = shifted(n=600, seed=1)
    folds = np.arange(600) % 3
    calibrated, maps = calibration.cross_fitted(y, low, folds)
    for fold in range(3):
        assert maps[fold] == calibration.fit(y[folds != fold], low[folds != fold])
        np.testing.assert_allclose(calibrated[folds == fold], calibration.apply(maps[fold], low[folds == fold]))
    y_changed = y.copy()
    y_changed[folds == 0] = 1 - y_changed[folds == 0]  # fold 0's own labels never reach fold 0's map
    assert calibration.cross_fitted(y_changed, low, folds)[1][0] == maps[0]
