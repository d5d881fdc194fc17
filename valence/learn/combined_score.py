"""P(Positive) from the classifier and the valence head together: a logistic map of the classifier's logit and
the predicted valence, fit on held-out predictions of the training images (stacking).

On OASIS, ranking photos by the valence head's predicted rating beats the classifier's own P(Positive) out of fold
(ROC AUC 0.824 against 0.815, benchmarks/rating_heads.py): the raters' means carry more than their threshold.
The two agree mostly (r ≈ 0.9) and err differently, so P(Positive) = sigmoid(a · logit + b · valence + c), with
a, b, c fit by an unpenalised logistic regression on the inner folds' held-out predictions (the ones that chose C
and α), beats both. Both heads are linear in the same features, so the map folds into the classifier's sigmoid
Dense unit: one kernel, one bias, no new layer.
"""
import numpy as np
from sklearn.linear_model import LogisticRegression

from valence.learn.calibration import logit


def fit(y_true, probability, valence):
    """(logit weight, valence weight, intercept) mapping the classifier's P(Positive) and the predicted valence of
    the same images (held out from the heads that scored them) to their labels (0/1)."""
    regression = LogisticRegression(C=np.inf).fit(np.c_[logit(probability), valence], np.asarray(y_true))
    return float(regression.coef_[0, 0]), float(regression.coef_[0, 1]), float(regression.intercept_[0])


def apply(combiner, probability, valence):
    """P(Positive) of images with the classifier's ``probability`` and the predicted ``valence``."""
    logit_weight, valence_weight, intercept = combiner
    return 1 / (1 + np.exp(-(logit_weight * logit(probability) + valence_weight * np.asarray(valence) + intercept)))


def dense_weights(combiner, classifier, valence):
    """(kernel, bias) of one sigmoid Dense unit giving the combined P(Positive) from the features, where
    ``classifier`` and ``valence`` are the (kernel, bias) of the classifier's logit and the valence head's rating."""
    logit_weight, valence_weight, intercept = combiner
    kernel = logit_weight * classifier[0] + valence_weight * valence[0]
    bias = logit_weight * classifier[1] + valence_weight * valence[1] + intercept
    return kernel.astype(np.float32), bias.astype(np.float32)
