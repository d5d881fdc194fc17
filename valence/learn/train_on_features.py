"""train.model frozen: a head on the features stage's frozen ImageNet features, released as one Keras model.

No backbone trains, so the features computed once (data/features) are all the images the head ever needs:
C is chosen by grouped cross-validation inside the training images, the head is fit on all of them, and the
released model is the same extractor that computed the features with the head as its sigmoid Dense layer.
The history has one row per C candidate in ascending order (its "phase", "C=… (chosen)" for the released
one, whose scores metrics.json keeps): the head fit on every training image scored on them (loss, accuracy, auc) and the inner folds' held-out predictions (val_loss, val_accuracy,
val_auc). The fold stages use ``fit_head`` and ``score`` (scikit-learn on stored features, no TensorFlow), the
release ``train``. Where the labelled images carry ratings (valence, arousal: OASIS), ``fit_rating_heads`` fits a
ridge head for each, its α chosen by the same grouped inner folds, and ``score_ratings`` predicts them.
"""
import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from valence import runtime
from valence.data.labels import RATINGS, ratings, targets
from valence.learn import features, logistic_head, rating_heads


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
    """The head of ``p.frozen`` fit on manifest ``rows``' stored features, C chosen by grouped inner CV:
    (fitted head, history rows). Needs no TensorFlow: every fold's head is a few seconds of scikit-learn."""
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
    return logistic_head.fit(x, y, best, p.class_weight), history


def fit_rating_heads(p, rows, store="data/features", what="the training images"):
    """{rating: ridge head} for each of RATINGS that ``rows`` carry (none for unrated data), each fit on the rows
    rated, its α chosen by grouped inner CV among ``p.frozen.rating_alphas``."""
    h, heads = p.hyper, {}
    for name in RATINGS:
        rating = ratings(rows, name)
        rated = [r for r, value in zip(rows, rating) if not np.isnan(value)]
        if not rated:
            continue
        x = np.asarray(features.load(store, [r["path"] for r in rated])[:h.views])
        groups = np.array([r.get("group") or r["path"] for r in rated])
        best, chosen_by, _ = rating_heads.choose_alpha(x, rating[~np.isnan(rating)], groups, h.rating_alphas,
                                                       h.inner_folds, p.seed, what)
        print(f"{name} head on {len(rated)} rated images: α {best:g}, the best mean Pearson r over the inner folds "
              f"({', '.join(f'α={a:g} {r:.4f}' for a, r in chosen_by.items())})")
        heads[name] = rating_heads.fit(x, rating[~np.isnan(rating)], best)
    return heads


def score_ratings(heads, rows, store="data/features", flip_average=True):
    """{rating: predicted rating of each of ``rows``} from their stored features, flip-averaged as ``score``."""
    x = features.load(store, [r["path"] for r in rows])[:2 if flip_average else 1]
    return {name: rating_heads.predict(head, x) for name, head in heads.items()}


def score(head, rows, store="data/features", flip_average=True):
    """P(Positive) of manifest ``rows`` from their stored features, as the released model with ``head`` scores
    their images: view 0 is the photo, view 1 its mirror (flip averaging takes the mean of both)."""
    return logistic_head.probability(head, features.load(store, [r["path"] for r in rows])[:2 if flip_average else 1])


def train(p, rows, store="data/features", live=None, weights="imagenet", what="all labelled images"):
    """The released model: the head fit on manifest ``rows`` joined to the extractor; (model, history rows)."""
    runtime.configure(p.seed)  # threads; the extractor stays float32, as the features stage computed them
    head, history = fit_head(p, rows, store, live, what)
    return logistic_head.with_head(features.combined_extractor(p.hyper.extractors(), weights), head, "frozen"), history
