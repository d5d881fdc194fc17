"""The photo check: a head on the same frozen features that tells the photos the model learnt from apart from
generated non-photos (valence.data.non_photos), so a page of text or a chart is flagged rather than labelled.

Distances to the training photos in ImageNet feature space do not find such images (issue 37: AUROC 0.70 for
the nearest neighbours, 0.41 for Mahalanobis); a head trained against examples of non-photos does (outlier
exposure). A standardised logistic regression, the classes weighed as balanced, P(photo) out; folded into one
sigmoid Dense unit, it joins the released model as the output "photo". What it cannot know: a real photo of
something OASIS never showed is still a photo.
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from valence.data.labels import PHOTO


def fit(photos, non_photos, c):
    """The head on (views, images, features) of photos (label 1) and of non-photos (label 0), each image its
    views' mean."""
    x = np.concatenate([np.mean(photos, axis=0), np.mean(non_photos, axis=0)])
    y = np.r_[np.ones(photos.shape[1]), np.zeros(non_photos.shape[1])]
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, class_weight="balanced")).fit(x, y)


def probability(head, view_features):
    """P(photo) of each image: the mean over its views, as flip averaging does with views 0 and 1."""
    return np.mean([head.predict_proba(view)[:, 1] for view in view_features], axis=0)


def kinds_of_fold(kinds, fold, folds):
    """The kinds (in their first-seen order in ``kinds``) fold ``fold`` of ``folds`` holds out: kind i goes to
    fold i mod folds, so the fold stages share the leave-one-kind-out fits."""
    return list(dict.fromkeys(kinds))[fold::folds]


def leave_one_kind_out(photos, non_photos, kinds, c, held_out):
    """{kind: P(photo) of each of that kind's images from the head trained on ``photos`` and every other kind}
    for each kind in ``held_out``: how the check does on a kind of non-photo it never saw."""
    kinds = np.asarray(kinds)
    return {kind: probability(fit(photos, non_photos[:, kinds != kind], c), non_photos[:, kinds == kind])
            for kind in held_out}


def with_photo_check(model, head, threshold):
    """``model`` (image → {"probability", …} or P(Positive) alone, from features through its Dense layer "head")
    with the photo check as one more sigmoid unit on the same features, shifted so that P(photo) = ``threshold``
    scores 0.5: outputs {…, "photo": the photo score, below 0.5 "not a photo"}. The model file then needs no
    threshold beside it (evaluate.photo_threshold is chosen out of fold)."""
    import keras

    from valence.learn.calibration import logit

    from valence.learn.logistic_head import dense_weights

    features = next(layer for layer in model.layers if layer.name == "head").input
    outputs = dict(model.output) if isinstance(model.output, dict) else {"probability": model.output}
    dense = keras.layers.Dense(1, activation="sigmoid", name=PHOTO)
    outputs[PHOTO] = dense(features)
    kernel, bias = dense_weights(head)
    dense.set_weights([kernel, (bias - logit(threshold)).astype(np.float32)])
    return keras.Model(model.input, outputs, name=model.name)
