import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from valence.learn import calibration, heads


def distorted(mapping, n=4000, seed=0):
    """Labels drawn from known probabilities, and a score that reports them through ``mapping`` (a, b, c)."""
    rng = np.random.default_rng(seed)
    truth = 1 / (1 + np.exp(-rng.normal(0.7, 1.5, n)))
    y = (rng.random(n) < truth).astype(int)
    return y, calibration.apply(mapping, truth), truth


def test_the_beta_map_undoes_a_shift_of_the_logit_and_keeps_the_ranking():
    y, low, _ = distorted((1.0, 1.0, -0.8))  # shifted low, as balanced class weights do to a 2:1 Positive set
    a, b, c = calibration.fit(y, low)
    assert a == pytest.approx(1.0, abs=0.12) and b == pytest.approx(1.0, abs=0.12) and c == pytest.approx(0.8, abs=0.15)
    calibrated = calibration.apply((a, b, c), low)
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, low), abs=1e-12)
    before, after = (calibration.expected_calibration_error(y, p) for p in (low, calibrated))
    assert after < 0.03 < before and abs(calibrated.mean() - y.mean()) < 0.02


def test_the_beta_map_bends_the_two_ends_apart_where_platt_cannot():
    """A score bent unevenly at its two ends: the Platt map, the beta map with a = b, stretches both ends alike
    and leaves a gap; the beta map closes it."""
    y, bent, _ = distorted((2.0, 0.5, 0.0))
    (slope,), intercept = heads.stack(y, [heads.logit(bent)])
    platt = calibration.apply((slope, slope, intercept), bent)
    np.testing.assert_allclose(heads.logit(platt), slope * heads.logit(bent) + intercept, rtol=1e-9)
    beta = calibration.apply(calibration.fit(y, bent), bent)
    assert calibration.expected_calibration_error(y, beta) < 0.015 < 0.025 < calibration.expected_calibration_error(y, platt)


def test_the_map_stays_increasing_when_the_labels_would_turn_an_end_backwards():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 3000)
    y = (rng.random(3000) < np.where(p < 0.5, 0.4, p)).astype(int)  # the bottom half says nothing: flat at 0.4
    unconstrained = heads.stack(y, [np.log(p), -np.log(1 - p)])[0]
    assert min(unconstrained) < 0  # a plain fit would turn the low end backwards here
    a, b, c = calibration.fit(y, p)
    assert min(a, b) == 0 and max(a, b) > 0
    assert (np.diff(calibration.apply((a, b, c), np.sort(p))) >= 0).all()


def test_expected_calibration_error_is_the_weighted_gap_of_the_bins():
    y = np.array([0, 1, 1, 1, 0, 0])
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.45])  # bins 0 (2 images), 9 (2), 5 (1), 4 (1)
    rows = calibration.reliability(y, p)
    assert [(r["bin"], r["images"]) for r in rows] == [(0.0, 2), (0.4, 1), (0.5, 1), (0.9, 2)]
    assert rows[0]["observed"] == 0.5 and rows[-1]["predicted"] == pytest.approx(0.95)
    gaps = 2 * 0.45 + 1 * 0.45 + 1 * 0.55 + 2 * 0.05
    assert calibration.expected_calibration_error(y, p) == pytest.approx(gaps / 6)


def test_cross_fitting_maps_each_fold_by_the_other_folds_only():
    y, low, _ = distorted((1.0, 1.0, -0.8), n=600, seed=1)
    folds = np.arange(600) % 3
    calibrated, maps = calibration.cross_fitted(y, low, folds)
    for fold in range(3):
        assert maps[fold] == calibration.fit(y[folds != fold], low[folds != fold])
        np.testing.assert_allclose(calibrated[folds == fold], calibration.apply(maps[fold], low[folds == fold]))
    y_changed = y.copy()
    y_changed[folds == 0] = 1 - y_changed[folds == 0]  # fold 0's own labels never reach fold 0's map
    assert calibration.cross_fitted(y_changed, low, folds)[1][0] == maps[0]


def test_the_chance_distribution_of_the_ece_is_that_of_labels_drawn_from_the_probabilities():
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, 300)
    y = (rng.random(300) < p).astype(int)
    found = calibration.null_ece(y, p, seed=7, draws=500)
    draws, ordered = np.random.default_rng(7), np.sort(p)  # the same stream, label set by label set, through the ECE
    brute = np.concatenate([[calibration.expected_calibration_error(row, ordered)
                             for row in draws.random((250, 300)) < ordered] for _ in range(2)])
    assert found["null_median"] == pytest.approx(np.median(brute), abs=1e-6)
    assert found["null_p95"] == pytest.approx(np.quantile(brute, 0.95), abs=1e-6)
    assert found["p_value"] == pytest.approx((brute >= found["ece"] - 1e-12).mean(), abs=1e-6)
    assert found["p_value"] > 0.01  # these labels are drawn from p: calibrated
    shuffled = np.random.default_rng(5).permutation(300)  # the rows in another order: the same distribution
    assert calibration.null_ece(y[shuffled], p[shuffled], seed=7, draws=500) == found
    bent = calibration.apply((1.0, 1.0, 1.0), p)  # the same labels against probabilities shifted up
    assert calibration.null_ece(y, bent, seed=7, draws=500)["p_value"] < 0.01
