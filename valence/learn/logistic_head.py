"""Heads on frozen features: standardise, then logistic regression (scikit-learn), the regularisation C chosen
by grouped cross-validation inside the training images.

Standardised features with C ≈ 0.001 suit 1,000–3,000 features from a few hundred photos (../shared/RESEARCH.md);
folded into one Keras Dense layer, a fitted head joins its feature extractor as one self-contained model.
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from valence.data.folds import check_fillable
from valence.data.labels import CLASSES
from valence.errors import PipelineError


def fit(view_features, y, c, class_weight="balanced"):
    """A standardised logistic regression on (views, images, features), each image its views' mean."""
    head = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000,
                                                              class_weight=None if class_weight == "none" else "balanced"))
    return head.fit(np.mean(view_features, axis=0), y)


def probability(head, view_features):
    """P(Positive) of each image: the mean over its views, as flip averaging does with views 0 and 1."""
    return np.mean([head.predict_proba(view)[:, 1] for view in view_features], axis=0)


def choose_c(view_features, y, groups, cs, folds, seed, class_weight="balanced", what="the training images"):
    """(best C, {C: mean ROC AUC over the inner folds}, {C: each image's P(Positive) from the inner fold that
    held it out}) over ``folds`` stratified group folds of these training images.

    An inner fold holding one class has no ROC AUC (few photos per class): the mean is over the inner folds
    that hold both, the same folds for every C; a one-line PipelineError when none does or the folds cannot
    be made."""
    check_fillable([CLASSES[t] for t in y], groups, folds, what, "use more photos or a smaller train.frozen.inner_folds")
    inner = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(inner.split(np.zeros(len(y)), y, groups))
    scored = [test for _, test in splits if len(set(y[test])) == 2]
    if not scored:
        raise PipelineError(f"{what}: no inner fold of {folds} holds both classes, so no C can be scored; "
                            "use more photos or a smaller train.frozen.inner_folds")
    scores, held_out = {}, {}
    for c in cs:
        held_out[c] = np.zeros(len(y))
        for train, test in splits:
            held_out[c][test] = probability(fit(view_features[:, train], y[train], c, class_weight), view_features[:, test])
        scores[c] = float(np.mean([roc_auc_score(y[test], held_out[c][test]) for test in scored]))
    return max(cs, key=lambda c: (scores[c], -c)), scores, held_out  # ties: the stronger regularisation


def dense_weights(head):
    """(kernel (features, 1), bias (1,)) of one Dense unit computing a standardised linear ``head``'s output (the
    logistic regression's logit, or a ridge's prediction: valence.learn.rating_heads) from raw features."""
    scaler, regression = head[0], head[-1]
    kernel = np.ravel(regression.coef_) / scaler.scale_
    bias = np.ravel(regression.intercept_)[0] - kernel @ scaler.mean_
    return kernel[:, None].astype(np.float32), np.array([bias], np.float32)


def with_head(extractor, head, name):
    """One Keras model: ``extractor`` (image → features) and ``head`` as a sigmoid Dense layer."""
    import keras  # here, not above: fitting and scoring heads needs no TensorFlow

    dense = keras.layers.Dense(1, activation="sigmoid", name="head")
    model = keras.Model(extractor.input, dense(extractor.output), name=name)
    dense.set_weights(dense_weights(head))
    return model
