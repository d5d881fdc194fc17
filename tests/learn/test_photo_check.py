"""The photo check: photos against generated non-photos, a kind it never saw flagged, one unit in the model."""
import numpy as np

from valence.learn import photo_check


def clusters(rng, centre, n, width=20):
    return (centre + rng.normal(0, 1, (n, width)))[None].repeat(2, axis=0)


def test_a_kind_never_seen_is_flagged_when_it_lies_on_the_non_photo_side():
    """Photos around one point, three generated kinds around others on the far side: the head trained without
    a kind still flags it, and flags almost no photo it did not train on. (A kind that differed from the others
    in a direction they share with the photos would pass: the check knows non-photos only by example.)"""
    rng = np.random.default_rng(0)
    photos = clusters(rng, np.r_[4.0, np.zeros(19)], 200)
    centres = {"text": np.r_[-4.0, 2, 0, 0, np.zeros(16)], "chart": np.r_[-4.0, 0, 2, 0, np.zeros(16)],
               "flat": np.r_[-4.0, 0, 0, 2, np.zeros(16)]}  # each kind also apart in a direction of its own
    non_photos = np.concatenate([clusters(rng, c, 30) for c in centres.values()], axis=1)
    kinds = [k for k in centres for _ in range(30)]
    scores = photo_check.leave_one_kind_out(photos[:, :150], non_photos, kinds, 1.0, ["text", "flat"])
    assert sorted(scores) == ["flat", "text"]
    assert all((s < 0.5).mean() >= 0.9 for s in scores.values())  # each unseen kind flagged (measured 1.0, 0.97)
    head = photo_check.fit(photos[:, :150], non_photos, 1.0)
    assert (photo_check.probability(head, photos[:, 150:]) < 0.5).mean() < 0.05  # unseen photos pass


def test_the_kinds_are_shared_out_over_the_folds():
    kinds = ["a", "a", "b", "c", "b", "d", "e"]
    assert [photo_check.kinds_of_fold(kinds, k, 2) for k in (0, 1)] == [["a", "c", "e"], ["b", "d"]]


def test_the_released_unit_scores_half_at_the_threshold():
    """One more sigmoid unit on the classifier's features, its bias shifted by logit(threshold): the model's
    "photo" output is sigmoid(logit(P(photo)) − logit(threshold)), P(Positive) unchanged."""
    import keras

    from valence.learn.calibration import logit
    from valence.learn.logistic_head import with_head

    rng = np.random.default_rng(1)
    inputs = keras.Input((4, 5, 3))
    extractor = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    classifier = photo_check.fit(rng.normal(size=(1, 40, 3)), rng.normal(1, 1, (1, 40, 3)), 1.0)
    model = with_head(extractor, classifier, "tiny")  # any fitted standardised logistic head will do as classifier
    checked = photo_check.with_photo_check(model, classifier, threshold=0.7)
    images = rng.uniform(0, 255, (6, 4, 5, 3)).astype(np.float32)
    out = checked(images)
    pooled = images.mean(axis=(1, 2))
    p_photo = classifier.predict_proba(pooled)[:, 1]
    np.testing.assert_allclose(np.asarray(out["photo"])[:, 0], 1 / (1 + np.exp(-(logit(p_photo) - logit(0.7)))), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["probability"]), np.asarray(model(images)), atol=1e-6)
