"""Heads for the ratings (valence, arousal) on frozen features: standardise, then ridge regression (scikit-learn),
its α chosen by grouped cross-validation inside the training images, as the classifier's C is.

A ridge on the features stage's output predicts OASIS' rated valence with Pearson r ≈ 0.64 on concepts it
never saw, and arousal with ≈ 0.57 (../shared/RESEARCH.md; α ≈ 3000 for ~3,000 features from ~570 photos). The
prediction is on the ratings' own scale (OASIS: 1–7), the raters' mean for a photo like it; folded into one
linear Dense unit, a fitted head joins the released model beside P(Positive).
"""
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from valence.data.labels import output_name
from valence.errors import PipelineError
from valence.learn.logistic_head import dense_weights  # the same fold of the scaler into one Dense unit


def fit(view_features, rating, alpha):
    """A standardised ridge on (views, images, features), each image its views' mean."""
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(np.mean(view_features, axis=0), rating)


def predict(head, view_features):
    """The predicted rating of each image: the mean over its views, as flip averaging does with views 0 and 1."""
    return np.mean([head.predict(view) for view in view_features], axis=0)


def pearson(a, b):
    """Pearson's r, 0 where either side is constant (no linear relation to measure)."""
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm else 0.0


def choose_alpha(view_features, rating, groups, alphas, folds, seed, what="the training images"):
    """(best α, {α: mean Pearson r over the inner folds}, {α: each image's prediction from the inner fold that held
    it out}) over ``folds`` shuffled group folds of these training images; ties go to the stronger α."""
    if len(set(groups)) < folds:
        raise PipelineError(f"{what}: {len(set(groups))} groups of rated images cannot fill {folds} inner folds; "
                            "use more photos or a smaller train.frozen.inner_folds")
    splits = list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(rating, rating, groups))
    scores, held_out = {}, {}
    for alpha in alphas:
        held_out[alpha] = np.zeros(len(rating))
        for train, test in splits:
            held_out[alpha][test] = predict(fit(view_features[:, train], rating[train], alpha), view_features[:, test])
        scores[alpha] = float(np.mean([pearson(held_out[alpha][test], rating[test]) for _, test in splits]))
    return max(alphas, key=lambda a: (scores[a], a)), scores, held_out


def scale_of(rating, declared=(), name="the rating"):
    """The rating scale a model records: ``declared`` (unzip.rating_scale), which every rating must lie in, or
    without it the rated training images' range widened to whole numbers (1.3–6.6 → 1–7)."""
    low, high = float(np.nanmin(rating)), float(np.nanmax(rating))
    if not declared:
        return float(np.floor(low)), float(np.ceil(high))
    if low < declared[0] or high > declared[1]:
        raise PipelineError(f"{name} ratings run from {low:g} to {high:g}, outside unzip.rating_scale "
                            f"[{declared[0]:g}, {declared[1]:g}]; set the questionnaire's scale, or [] to take "
                            "the rated range")
    return float(declared[0]), float(declared[1])


def with_ratings(model, heads, scales):
    """``model`` (image → P(Positive) through its last layer, the logistic head on the extracted features) with a
    linear unit per rating on the same features, kept within the rating's scale: one Keras model whose outputs
    are {"probability": …, output_name(rating, scale): …}."""
    import keras  # here, not above: fitting and scoring heads needs no TensorFlow

    features = model.layers[-1].input
    outputs = {"probability": model.output}
    for name, head in heads.items():
        low, high = scales[name]
        dense = keras.layers.Dense(1, name=name)
        predicted = dense(features)
        dense.set_weights(dense_weights(head))
        # clip to [low, high] with layers safe-mode loading knows: shift, ReLU capped at the width, shift back
        shifted = keras.layers.Rescaling(1.0, offset=-low, name=f"{name}_from_low")(predicted)
        capped = keras.layers.ReLU(max_value=high - low, name=f"{name}_within_scale")(shifted)
        outputs[output_name(name, (low, high))] = keras.layers.Rescaling(1.0, offset=low, name=f"{name}_scaled")(capped)
    return keras.Model(model.input, outputs, name=model.name)
