import json
import warnings

import numpy as np
import pytest
from sklearn import metrics

from valence.data.labels import CLASSES, label_of
from valence.report import evaluation
from valence.report.evaluation import binary_metrics, confusion, per_class, prediction_rows


def scores(y_true, probability, threshold):
    """The headline and the per-class detail together, as evaluate writes them to two files."""
    return {**binary_metrics(y_true, probability, threshold), **per_class(y_true, probability, threshold)}


# Hand-worked case: predictions at 0.5 are [0, 1, 1, 1, 0].
Y = [0, 0, 0, 1, 1]
P = [0.2, 0.7, 0.8, 0.6, 0.3]


def random_case(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    return y, p


def walk(value):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def test_binary_metrics_by_hand():
    m = scores(Y, P, 0.5)
    assert m["images"] == 5 and m["threshold"] == 0.5
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2, abs=1e-6)
    assert m["majority_accuracy"] == pytest.approx(3 / 5)
    # Of the 6 (positive, negative) pairs only 0.6>0.2 and 0.3>0.2 are ranked right.
    assert m["roc_auc"] == pytest.approx(2 / 6, abs=1e-6)
    neg, pos = m["Negative"], m["Positive"]
    assert neg["precision"] == pytest.approx(1 / 2) and neg["recall"] == pytest.approx(1 / 3, abs=1e-6)
    assert pos["precision"] == pytest.approx(1 / 3, abs=1e-6) and pos["recall"] == pytest.approx(1 / 2)
    assert neg["f1"] == pytest.approx(0.4, abs=1e-6) and pos["f1"] == pytest.approx(0.4, abs=1e-6)
    assert (neg["support"], pos["support"]) == (3, 2)


def test_binary_metrics_symmetric_tiny_case():
    m = scores([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5)  # predictions [0, 1, 0, 1]
    assert m["accuracy"] == 0.5 and m["majority_accuracy"] == 0.5
    for name in CLASSES:  # one of two predicted right, one of two actual found, per class
        assert m[name] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 pairs ranked right


def test_threshold_changes_predictions():
    low = scores(Y, P, 0.25)  # predictions [0, 1, 1, 1, 1]
    assert low["threshold"] == 0.25
    assert low["accuracy"] == pytest.approx(3 / 5)
    assert low["Positive"]["recall"] == 1.0 and low["Negative"]["recall"] == pytest.approx(1 / 3, abs=1e-6)
    assert low["roc_auc"] == scores(Y, P, 0.5)["roc_auc"]  # ranking metrics ignore the threshold
    at = scores([0, 1], [0.5, 0.5], 0.5)  # "at or above" the threshold is Positive
    assert at["Positive"]["recall"] == 1.0 and at["Negative"]["recall"] == 0.0


@pytest.mark.parametrize("seed, threshold", [(0, 0.5), (1, 0.3), (2, 0.7)])
def test_binary_metrics_match_sklearn(seed, threshold):
    y, p = random_case(seed=seed)
    pred = (p >= threshold).astype(int)
    m = scores(y, p, threshold)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred), abs=1e-6)
    assert m["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y, pred), abs=1e-6)
    assert m["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-6)
    assert m["average_precision"] == pytest.approx(metrics.average_precision_score(y, p), abs=1e-6)
    assert m["majority_accuracy"] == pytest.approx(max(y.mean(), 1 - y.mean()), abs=1e-6)
    prec, rec, f1, support = metrics.precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    for i, name in enumerate(CLASSES):
        assert m[name]["precision"] == pytest.approx(prec[i], abs=1e-6)
        assert m[name]["recall"] == pytest.approx(rec[i], abs=1e-6)
        assert m[name]["f1"] == pytest.approx(f1[i], abs=1e-6)
        assert m[name]["support"] == support[i]
    assert sum(m[name]["support"] for name in CLASSES) == m["images"] == len(y)


@pytest.mark.parametrize("y", [[1, 1, 1, 0], [0, 0, 0, 0, 1, 1]])
def test_majority_accuracy_is_larger_share(y):
    share = np.mean(y)
    assert scores(y, np.linspace(0, 1, len(y)), 0.5)["majority_accuracy"] == pytest.approx(max(share, 1 - share))


def test_json_plain_python():
    y, p = random_case()
    everything = [binary_metrics(y, np.float32(p), np.float64(0.5)), per_class(y, np.float32(p), np.float64(0.5)),
                  prediction_rows([f"{i}.jpg" for i in range(len(y))], y.astype(np.float32), p, 0.5)]
    for value in walk(everything):
        assert type(value) in (dict, list, str, int, float, type(None)), type(value)
    assert json.loads(json.dumps(everything)) == everything
    supports = [everything[1][name]["support"] for name in CLASSES]
    assert all(type(s) is int for s in supports)


def test_single_class_has_no_auc():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = scores([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert m["roc_auc"] is None and m["average_precision"] is None
    assert m["majority_accuracy"] == 1.0 and m["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["Negative"]["support"] == 0 and m["Positive"]["support"] == 3
    json.dumps(m)


def test_prediction_rows():
    rows = prediction_rows(["a.jpg", "b.jpg", "c.jpg"], [0, 1, 1], np.array([0.5, 0.49, 0.91]), 0.5)
    assert rows == [
        {"path": "a.jpg", "actual": "Negative", "predicted": "Positive", "probability": 0.5},
        {"path": "b.jpg", "actual": "Positive", "predicted": "Negative", "probability": 0.49},
        {"path": "c.jpg", "actual": "Positive", "predicted": "Positive", "probability": 0.91},
    ]


@pytest.mark.parametrize("threshold, expected", [(0.5, [[1, 2], [1, 1]]),  # predictions [0, 1, 1, 1, 0]
                                                 (0.9, [[3, 0], [2, 0]])])  # nothing called Positive
def test_confusion_by_hand(threshold, expected):
    matrix = confusion(Y, P, threshold)
    assert matrix.shape == (2, 2) and matrix.tolist() == expected
    assert matrix.sum() == len(Y)
    pred = [int(p >= threshold) for p in P]
    assert matrix.tolist() == [[sum(t == a and q == b for t, q in zip(Y, pred)) for b in (0, 1)] for a in (0, 1)]


def test_out_of_fold_pools_every_image_and_spreads_over_folds():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = np.array([0, 1, 1] * 40)
    folds = np.repeat(np.arange(4), 30)
    probability = np.clip(0.5 + (y - 0.5) * np.linspace(0.05, 0.6, 120) + rng.normal(0, 0.15, 120), 0, 1)
    valence = np.where(y == 1, 5.0, 3.0) + probability
    result = evaluation.out_of_fold(y, probability, folds, 0.5, valence=valence)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, probability), abs=1e-6)
    per_fold = [roc_auc_score(y[folds == k], probability[folds == k]) for k in range(4)]
    assert result["folds"]["roc_auc"]["mean"] == pytest.approx(np.mean(per_fold), abs=1e-6)
    assert result["folds"]["roc_auc"]["std"] == pytest.approx(np.std(per_fold), abs=1e-6) and np.std(per_fold) > 0.01
    assert result["spearman_valence"] > 0.5 and result["majority_accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    unrated = evaluation.out_of_fold(y, probability, folds, 0.5, valence=[None] * 120)
    assert "spearman_valence" not in unrated and "spearman_valence" not in evaluation.out_of_fold(y, probability, folds, 0.5)


def test_balanced_threshold_maximises_balanced_accuracy():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    probability = np.array([0.1, 0.7, 0.75, 0.6, 0.8, 0.85, 0.9, 0.92, 0.95, 0.99])  # 0.5 calls two Negatives wrong
    t = evaluation.balanced_threshold(y, probability)
    best = max(metrics.balanced_accuracy_score(y, probability >= c) for c in np.linspace(0, 1, 1001))
    assert metrics.balanced_accuracy_score(y, probability >= t) == pytest.approx(best)
    assert metrics.balanced_accuracy_score(y, probability >= 0.5) < best and t > 0.5


def test_rating_scores_by_hand_and_against_scipy():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(4)
    rated = rng.uniform(1, 7, 60)
    predicted = rated + rng.normal(0, 0.8, 60)
    folds = np.repeat(np.arange(3), 20)
    rated[5], predicted[7] = np.nan, np.nan  # unrated and unpredicted images are left out
    s = evaluation.rating_scores(rated, predicted, folds)
    keep = ~np.isnan(rated) & ~np.isnan(predicted)
    assert s["images"] == 58
    assert s["pearson_r"] == pytest.approx(pearsonr(predicted[keep], rated[keep]).statistic, abs=1e-6)
    assert s["spearman"] == pytest.approx(spearmanr(predicted[keep], rated[keep]).statistic, abs=1e-6)
    assert s["mae"] == pytest.approx(np.abs(predicted - rated)[keep].mean(), abs=1e-6)
    each = [pearsonr(predicted[keep & (folds == k)], rated[keep & (folds == k)]).statistic for k in range(3)]
    assert list(s["folds"]["pearson_r_each"].values()) == pytest.approx(each, abs=1e-6)
    assert s["folds"]["pearson_r"] == pytest.approx({"mean": np.mean(each), "std": np.std(each)}, abs=1e-6)
    perfect = evaluation.rating_scores([1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 1, 1])
    assert (perfect["pearson_r"], perfect["mae"]) == (1.0, 0.0)
    assert perfect["folds"] == {"pearson_r": None, "pearson_r_each": {}}  # folds of 2: no r to spread
    assert evaluation.rating_scores([1, np.nan, 3], [1, 2, np.nan], [0, 0, 0]) is None  # nothing to score


def test_out_of_fold_rows_carry_the_predicted_ratings(tmp_path):
    from valence.files import write_csv

    labelled = [{"path": f"{i}.jpg", "label": "Positive", "group": str(i), "fold": str(i % 2)} for i in range(4)]
    for k in range(2):
        rows = [{**r, "probability": 0.5, "classifier_probability": 0.25 + i / 10, "predicted_valence": 4.5 + i,
                 "predicted_arousal": ""}
                for i, r in enumerate(labelled) if r["fold"] == str(k)]
        write_csv(tmp_path / f"fold{k}/predictions.csv", rows, list(rows[0]))
    got = evaluation.out_of_fold_rows(labelled, tmp_path)
    assert [r["predicted_valence"] for r in got] == [4.5, 5.5, 6.5, 7.5]  # by path, across the fold files
    assert [r["classifier_probability"] for r in got] == [0.25, 0.35, 0.45, 0.55]
    assert all(np.isnan(r["predicted_arousal"]) for r in got)


def test_selective_accuracy_counts_the_most_confident_photos_first():
    # confidence |p − 0.5|: 0.45 (right), 0.4 (wrong), 0.3 (right), 0.2 (right), 0.1 (wrong), 0.05 (right)
    y = np.array([1, 0, 0, 1, 0, 1])
    p = np.array([0.95, 0.9, 0.2, 0.7, 0.6, 0.55])
    at, curve = evaluation.selective(y, p, 0.5, points=6)
    assert at == {"accuracy_at_50": pytest.approx(2 / 3), "accuracy_at_80": pytest.approx(3 / 5),
                  "accuracy_at_100": pytest.approx(4 / 6)}
    assert [round(r["accuracy"], 6) for r in curve] == [1.0, 0.5, round(2 / 3, 6), 0.75, 0.6, round(4 / 6, 6)]
    assert curve[-1]["coverage"] == 1.0


def test_an_uncertain_band_trades_coverage_for_accuracy_and_the_rule_finds_the_narrowest():
    y = np.array([1, 0, 0, 1, 0, 1])
    p = np.array([0.95, 0.9, 0.2, 0.7, 0.6, 0.55])
    off = evaluation.uncertain_scores(y, p, 0.5, 0.0)
    assert off["uncertain_share"] == 0 and off["accuracy_labelled"] == off["accuracy_all"] == pytest.approx(4 / 6)
    band = evaluation.uncertain_scores(y, p, 0.5, 0.15)  # 0.6 and 0.55 fall inside: one wrong, one right
    assert band["uncertain_share"] == pytest.approx(2 / 6) and band["accuracy_labelled"] == pytest.approx(3 / 4)
    # all: 4/6 right; leaving out 0.55 (right) lowers it to 3/5, leaving out 0.6 (wrong) too lifts it to 3/4
    assert evaluation.narrowest_band(y, p, 0.5, lift=0.05) == pytest.approx(0.1)
    assert evaluation.narrowest_band(y, p, 0.5, lift=0.5) is None
    assert [label_of(v, 0.5, 0.15) for v in p] == ["Positive", "Positive", "Negative", "Positive",
                                                             "Uncertain", "Uncertain"]


def test_the_band_rule_is_scored_on_folds_it_was_not_chosen_on():
    y, p = random_case(n=200, seed=3)
    folds = np.arange(200) % 4
    crossed = evaluation.band_cross_fitted(y, p, folds, 0.5)
    for fold in range(4):
        assert crossed["bands"][f"fold{fold}"] == (evaluation.narrowest_band(y[folds != fold], p[folds != fold], 0.5) or 0.0)
    kept = np.concatenate([np.abs(p[folds == k] - 0.5) >= crossed["bands"][f"fold{k}"] for k in range(4)])
    order = np.concatenate([np.flatnonzero(folds == k) for k in range(4)])
    assert crossed["uncertain_share"] == pytest.approx(1 - kept.mean(), abs=1e-6)
    right = ((p >= 0.5) == y)[order]
    assert crossed["accuracy_labelled"] == pytest.approx(right[kept].mean(), abs=1e-6)
