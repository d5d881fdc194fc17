"""train.model frozen: heads on the features stage's frozen ImageNet features, released as one Keras model.

No backbone trains, so the features computed once (data/features) are all the images the heads ever need:
C is chosen by grouped cross-validation inside the training images, the classifier is fit on all of them, and
the released model is the same extractor that computed the features with the head as its sigmoid Dense layer.
The history has one row per C candidate in ascending order (its "phase", "C=… (chosen)" for the released
one, whose scores metrics.json keeps): the head fit on every training image scored on them (loss, accuracy, auc)
and the inner folds' held-out predictions (val_loss, val_accuracy, val_auc). Where the labelled images carry
ratings (valence, arousal: OASIS), a ridge head for each, its α chosen by the same grouped inner folds; with
train.frozen.combine_valence, P(Positive) is the classifier and the valence head together
(valence.learn.combined_score), their weights fit on the inner folds' held-out predictions. The fold stages use
``fit_heads`` and ``score`` (scikit-learn on stored features, no TensorFlow), the release ``train``.
"""
from typing import NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from valence import runtime
from valence.data.labels import RATINGS, ratings, targets
from valence.learn import combined_score, features, logistic_head, photo_check, rating_heads


def scores(y, probability, prefix=""):
    return {f"{prefix}loss": log_loss(y, probability, labels=[0, 1]), f"{prefix}accuracy": accuracy_score(y, probability >= 0.5),
            f"{prefix}auc": roc_auc_score(y, probability)}


def log(live, row, plot=True):
    """One history row through dvclive: train/… and eval/… (the inner folds' held-out predictions), its phase;
    C goes to the summary only."""
    for name, value in row.items():
        if name == "C":
            live.log_metric("C", value, plot=False)
        elif name != "epoch":
            live.log_metric(name if name == "phase" else f"{'eval' if name.startswith('val_') else 'train'}/"
                            f"{name.removeprefix('val_')}", value, plot=plot)


def fit_head(p, rows, store="data/features", live=None, what="the training images"):
    """The classifier of ``p.frozen`` fit on manifest ``rows``' stored features, C chosen by grouped inner CV:
    (fitted head, history rows, each row's P(Positive) held out by the inner fold of the chosen C). Needs no
    TensorFlow: every fold's head is a few seconds of scikit-learn."""
    h = p.hyper
    x = features.load(store, [r["path"] for r in rows])[:h.views]
    y, groups = targets(rows).astype(int), np.array([r.get("group") or r["path"] for r in rows])
    print(f"training a head on {x.shape[2]} frozen features of {len(rows)} images ({h.views} view(s)); "
          f"C from {list(h.regularization)} by {h.inner_folds} grouped inner folds")
    best, chosen_by, held_out = logistic_head.choose_c(x, y, groups, h.regularization, h.inner_folds, p.seed,
                                                       p.class_weight, what)
    history = []
    for c in sorted(h.regularization):  # ascending C: the plots draw the candidates in order, the chosen one marked
        fitted = logistic_head.probability(logistic_head.fit(x, y, c, p.class_weight), x)
        row = {"epoch": len(history) + 1, "phase": f"C={c:g}" + (" (chosen)" if c == best else ""), "C": c,
               **scores(y, fitted), **scores(y, held_out[c], "val_")}
        history.append({k: v if k in ("epoch", "phase", "C") else round(float(v), 6) for k, v in row.items()})
        if live is not None:
            log(live, history[-1])
            live.next_step()
    if live is not None:  # metrics.json (`dvc metrics show`, `dvc exp show`) holds the released head's scores and C
        log(live, next(r for r in history if r["C"] == best), plot=False)
    print(f"C {best:g}: the best mean ROC AUC over the inner folds "
          f"({', '.join(f'C={c:g} {auc:.4f}' for c, auc in chosen_by.items())})")
    return logistic_head.fit(x, y, best, p.class_weight), history, held_out[best]


def fit_rating_heads(p, rows, store="data/features", what="the training images"):
    """({rating: ridge head}, {rating: each row's prediction held out by the inner fold of the chosen α, NaN where
    unrated}) for each of RATINGS that ``rows`` carry (none for unrated data), each head fit on the rows rated, its
    α chosen by grouped inner CV among ``p.frozen.rating_alphas``."""
    h, heads, held_out = p.hyper, {}, {}
    for name in RATINGS:
        rating = ratings(rows, name)
        rated = ~np.isnan(rating)
        if not rated.any():
            continue
        x = np.asarray(features.load(store, [r["path"] for r, keep in zip(rows, rated) if keep])[:h.views])
        groups = np.array([r.get("group") or r["path"] for r, keep in zip(rows, rated) if keep])
        best, chosen_by, predicted = rating_heads.choose_alpha(x, rating[rated], groups, h.rating_alphas,
                                                               h.inner_folds, p.seed, what)
        print(f"{name} head on {rated.sum()} rated images: α {best:g}, the best mean Pearson r over the inner folds "
              f"({', '.join(f'α={a:g} {r:.4f}' for a, r in chosen_by.items())})")
        heads[name] = rating_heads.fit(x, rating[rated], best)
        held_out[name] = np.full(len(rows), np.nan)
        held_out[name][rated] = predicted[best]
    return heads, held_out


class Heads(NamedTuple):
    classifier: object  # logistic_head's standardised logistic regression
    ratings: dict  # {rating: rating_heads' standardised ridge}, empty for unrated data
    combiner: tuple  # combined_score's (logit weight, valence weight, intercept); None: P(Positive) is the classifier's
    history: list  # a row per C candidate
    photo: object = None  # photo_check's head (photos against generated non-photos); None without non-photos


def fit_heads(p, rows, store="data/features", live=None, what="the training images", non_photos=()):
    """The ``Heads`` of ``p.frozen`` fit on manifest ``rows``: the classifier, a head per rating the rows carry,
    with ``combine_valence`` and a valence head the combiner fit on the rated rows' inner held-out predictions,
    and with ``non_photos`` (rows of generated images in the same store) the photo check."""
    classifier, history, held_out = fit_head(p, rows, store, live, what)
    heads, rated_held_out = fit_rating_heads(p, rows, store, what)
    combiner = None
    if p.hyper.combine_valence and "valence" in heads:
        rated = ~np.isnan(rated_held_out["valence"])
        combiner = combined_score.fit(targets(rows)[rated], held_out[rated], rated_held_out["valence"][rated])
        print(f"P(Positive) = sigmoid({combiner[0]:.3f} · classifier logit + {combiner[1]:.3f} · predicted valence "
              f"+ {combiner[2]:.3f}), fit on the inner folds' held-out predictions of {rated.sum()} rated images")
    photo = None
    if non_photos:
        photo = photo_check.fit(features.load(store, [r["path"] for r in rows])[:p.hyper.views],
                                features.load(store, [r["path"] for r in non_photos])[:p.hyper.views], p.hyper.photo_check_c)
        print(f"photo check: {len(rows)} photos against {len(non_photos)} generated non-photos, C {p.hyper.photo_check_c:g}")
    return Heads(classifier, heads, combiner, history, photo)


def score(heads, rows, store="data/features", flip_average=True):
    """{column: a value per manifest row}: P(Positive) ("probability"), the classifier's own
    ("classifier_probability"), each rating ("predicted_valence", …) and the photo check's P(photo)
    ("photo_score", with one), scored from the stored features as the
    released model scores the images: view 0 is the photo, view 1 its mirror, and flip averaging takes the mean of
    each output over both."""
    views = features.load(store, [r["path"] for r in rows])[:2 if flip_average else 1]
    classifier = [logistic_head.probability(heads.classifier, view[None]) for view in views]
    predicted = {name: [rating_heads.predict(head, view[None]) for view in views] for name, head in heads.ratings.items()}
    probability = classifier if heads.combiner is None else [
        combined_score.apply(heads.combiner, p, v) for p, v in zip(classifier, predicted["valence"])]
    return {"probability": np.mean(probability, axis=0), "classifier_probability": np.mean(classifier, axis=0),
            **{f"predicted_{name}": np.mean(v, axis=0) for name, v in predicted.items()},
            **({"photo_score": photo_check.probability(heads.photo, views)} if heads.photo is not None else {})}


def train(p, rows, store="data/features", live=None, weights="imagenet", what="all labelled images", non_photos=()):
    """The released model, the heads fit on manifest ``rows`` (and ``non_photos``) joined to the extractor:
    (model, ``Heads``). Its output is P(Positive), the combined score where the heads have a combiner; the rating
    heads and the photo check are left to ``rating_heads.with_ratings`` and ``photo_check.with_photo_check``
    (after calibration, which maps the last layer)."""
    runtime.configure(p.seed)  # threads; the extractor stays float32, as the features stage computed them
    heads = fit_heads(p, rows, store, live, what, non_photos)
    model = logistic_head.with_head(features.combined_extractor(p.hyper.extractors(), weights), heads.classifier, "frozen")
    if heads.combiner is not None:
        model.get_layer("head").set_weights(combined_score.dense_weights(
            heads.combiner, logistic_head.dense_weights(heads.classifier),
            logistic_head.dense_weights(heads.ratings["valence"])))
    return model, heads
