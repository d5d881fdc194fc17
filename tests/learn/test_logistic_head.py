import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from valence.errors import PipelineError
from valence.learn import logistic_head


def separable(n=120, d=40, views=2, seed=0):
    """(views, n, d) features whose first column carries the label, on unequal scales and offsets."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 != 0).astype(int)  # 2:1, like OASIS
    base = rng.normal(size=(n, d)) * rng.uniform(0.1, 50, d) + rng.uniform(-100, 100, d)
    base[:, 0] = rng.normal(size=n) + 6 * y
    return np.stack([base + rng.normal(scale=0.5, size=(n, d)) for _ in range(views)]).astype(np.float32), y


def test_head_learns_a_separable_signal_and_averages_views():
    x, y = separable()
    head = logistic_head.fit(x[:, :80], y[:80], c=0.1)
    assert roc_auc_score(y[80:], logistic_head.probability(head, x[:, 80:])) > 0.9
    p = logistic_head.probability(head, x[:, 80:])
    np.testing.assert_allclose(p, (head.predict_proba(x[0, 80:])[:, 1] + head.predict_proba(x[1, 80:])[:, 1]) / 2)


def test_shuffled_labels_teach_nothing():
    x, y = separable(n=300, seed=1)
    shuffled = np.random.default_rng(2).permutation(y)
    head = logistic_head.fit(x[:, :200], shuffled[:200], c=0.001)
    assert abs(roc_auc_score(y[200:], logistic_head.probability(head, x[:, 200:])) - 0.5) < 0.2


def test_balanced_class_weight_centres_the_probabilities():
    x, y = separable(seed=3)
    noise = x[:, :, 1:]  # without the signal, a balanced head says ~0.5 on average; an unweighted one the 2:1 prior
    balanced, plain = (logistic_head.probability(logistic_head.fit(noise, y, 1e-4, how), noise).mean() for how in ("balanced", "none"))
    assert abs(balanced - 0.5) < 0.05 and abs(plain - 2 / 3) < 0.05


def test_choose_c_scores_every_candidate_on_grouped_inner_folds():
    x, y = separable(seed=4)
    groups = np.arange(len(y)) // 2
    best, scores, held_out = logistic_head.choose_c(x, y, groups, [1e-4, 1e-3, 1e-1], folds=3, seed=0)
    assert set(scores) == {1e-4, 1e-3, 1e-1} and best in scores and scores[best] == max(scores.values())
    assert (best, scores) == logistic_head.choose_c(x, y, groups, [1e-4, 1e-3, 1e-1], folds=3, seed=0)[:2]
    assert all(len(p) == len(y) and 0 <= p.min() and p.max() <= 1 for p in held_out.values())


def test_inner_folds_holding_one_class_are_left_out_of_the_choice():
    x, y = separable(n=15, seed=5)
    y = np.array([0] * 3 + [1] * 12)  # 3 Negative over 5 inner folds: two folds hold only Positive
    _, scores, held_out = logistic_head.choose_c(x, y, np.arange(15), [1e-3, 1e-1], folds=5, seed=0)
    assert all(np.isfinite(list(scores.values())))
    splits = logistic_head.StratifiedGroupKFold(5, shuffle=True, random_state=0).split(x[0], y, np.arange(15))
    both = [test for _, test in splits if len(set(y[test])) == 2]
    assert 0 < len(both) < 5
    assert scores[1e-3] == pytest.approx(np.mean([roc_auc_score(y[t], held_out[1e-3][t]) for t in both]))


def test_too_few_photos_for_the_inner_folds_is_one_line_naming_them():
    x, y = separable(n=8, seed=6)
    y = np.array([0, 1] * 4)  # 4 of each class cannot fill 5 stratified inner folds
    with pytest.raises(PipelineError, match=r"^fold 0's training images: 4 Negative and 4 Positive images cannot fill "
                                            r"5 stratified folds .*train\.frozen\.inner_folds$"):
        logistic_head.choose_c(x, y, np.arange(8), [1e-3], folds=5, seed=0, what="fold 0's training images")


def test_the_dense_layer_repeats_the_head_inside_a_keras_model():
    x, y = separable(d=6)
    head = logistic_head.fit(x, y, c=0.01)
    inputs = keras.Input((6,))
    extractor = keras.Model(inputs, keras.layers.Identity()(inputs))
    model = logistic_head.with_head(extractor, head, "probe")
    np.testing.assert_allclose(np.asarray(model(x[0]))[:, 0], head.predict_proba(x[0])[:, 1], rtol=1e-4, atol=1e-5)
    assert model.name == "probe" and model.output_shape == (None, 1)
