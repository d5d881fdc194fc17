import numpy as np
import pytest

from valence.errors import PipelineError
from valence.learn import rating_heads


def linear_data(images=240, features=30, noise=0.3, seed=0):
    """(views (2, images, features), rating, groups, true weights): a known linear rating plus noise; view 1 is
    view 0 slightly perturbed, as a mirror image's features are."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(images, features))
    weights = rng.normal(size=features)
    rating = 4 + x @ weights * 0.3 + rng.normal(scale=noise, size=images)
    views = np.stack([x, x + rng.normal(scale=0.05, size=x.shape)])
    return views, rating, np.repeat(np.arange(images // 4), 4), weights


def test_a_head_recovers_a_known_linear_rating_on_images_it_never_saw():
    views, rating, groups, weights = linear_data()
    head = rating_heads.fit(views[:, :180], rating[:180], alpha=1.0)
    predicted = rating_heads.predict(head, views[:, 180:])
    assert rating_heads.pearson(predicted, rating[180:]) > 0.95
    assert np.abs(predicted - rating[180:]).mean() < 0.4  # on the rating's own scale, not standardised
    coef = head[-1].coef_ / head[0].scale_
    assert rating_heads.pearson(coef, weights) > 0.98


def test_alpha_is_chosen_by_grouped_inner_folds():
    views, rating, groups, _ = linear_data()
    best, scores, held_out = rating_heads.choose_alpha(views, rating, groups, [0.1, 1e5], folds=4, seed=0)
    assert best == 0.1 and scores[0.1] > scores[1e5] and scores[0.1] > 0.95  # a clean linear rating: the weak penalty wins
    noise = np.random.default_rng(1).normal(size=len(rating))  # a rating the features cannot predict
    best, scores, _ = rating_heads.choose_alpha(views, noise, groups, [0.1, 1e5], folds=4, seed=0)
    assert scores[0.1] < 0.3 and best == max(scores, key=lambda a: (scores[a], a))
    assert held_out[0.1].shape == rating.shape and not np.allclose(held_out[0.1], rating)


def test_inner_folds_never_split_a_group():
    views, rating, groups, _ = linear_data(images=40)
    seen = []

    class Spy:
        def __init__(self, *a, **k):
            pass

        def split(self, x, y, g):
            from sklearn.model_selection import GroupKFold

            for train, test in GroupKFold(n_splits=4, shuffle=True, random_state=0).split(x, y, g):
                seen.append(set(g[train]) & set(g[test]))
                yield train, test

    original = rating_heads.GroupKFold
    rating_heads.GroupKFold = Spy
    try:
        rating_heads.choose_alpha(views, rating, groups, [1.0], folds=4, seed=0)
    finally:
        rating_heads.GroupKFold = original
    assert len(seen) == 4 and all(not shared for shared in seen)


def test_too_few_groups_for_the_inner_folds_is_one_line():
    views, rating, _, _ = linear_data(images=12)
    with pytest.raises(PipelineError, match=r"^fold 2's training images: 3 groups of rated images cannot fill 5 "):
        rating_heads.choose_alpha(views, rating, np.repeat([0, 1, 2], 4), [1.0], 5, 0, "fold 2's training images")


def test_dense_weights_compute_the_head_from_raw_features():
    views, rating, _, _ = linear_data()
    head = rating_heads.fit(views, rating, alpha=10.0)
    kernel, bias = rating_heads.dense_weights(head)
    assert kernel.shape == (views.shape[2], 1) and bias.shape == (1,)
    assert np.allclose(views[0] @ kernel[:, 0] + bias[0], head.predict(views[0]), atol=1e-4)


def test_pearson_of_a_constant_is_zero():
    assert rating_heads.pearson([1, 1, 1], [1, 2, 3]) == 0.0
    assert rating_heads.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_an_output_name_carries_the_rating_and_its_scale():
    from valence.data.labels import output_name, parse_output_name

    for scale in ((1.0, 7.0), (-3.0, 3.0), (0.5, 9.5), (0.0, 100.0)):
        assert parse_output_name(output_name("arousal", scale)) == ("arousal", scale)
    assert output_name("valence", (1.0, 7.0)) == "valence_1_to_7"
    assert parse_output_name("probability") is None and parse_output_name("head") is None


def test_the_scale_is_the_rated_range_widened_to_whole_numbers():
    assert rating_heads.scale_of(np.array([1.3, np.nan, 6.6, 4.0])) == (1.0, 7.0)
    assert rating_heads.scale_of(np.array([-0.5, 2.0])) == (-1.0, 2.0)


def test_a_declared_scale_is_recorded_and_a_rating_outside_it_is_one_line():
    assert rating_heads.scale_of(np.array([1.7, 5.6]), (1.0, 7.0), "arousal") == (1.0, 7.0)
    with pytest.raises(PipelineError, match=r"^valence ratings run from 0.5 to 6, outside unzip.rating_scale \[1, 7\]"):
        rating_heads.scale_of(np.array([0.5, 6.0]), (1.0, 7.0), "valence")
