"""train.model frozen: heads on the features stage's frozen ImageNet features (valence.learn.heads).

No backbone trains, so the features computed once (data/features) are all the images the heads ever need. On a
fold's training images (or, for the release, on all of them) ``fit_heads`` fits, each as a ``Head``:
- the classifier, a standardised logistic regression, its C chosen by grouped inner cross-validation;
- where the images carry ratings (valence, arousal: OASIS), a ridge per rating, its α chosen by the same inner
  folds, kept within the rating's scale;
- with train.frozen.combine_valence and a valence head, P(Positive) from both, sigmoid(a · classifier logit +
  b · predicted valence + c), a, b, c fit on the inner folds' held-out predictions (else the classifier's own);
- with generated non-photos, the photo check (photos against them), its line at evaluate.photo_threshold.
The history has one row per C candidate in ascending order (its "phase", "C=… (chosen)" for the released one,
whose scores metrics.json keeps): the classifier fit on every training image scored on them (loss, accuracy,
auc) and the inner folds' held-out predictions (val_loss, val_accuracy, val_auc). The fold stages score the
heads on stored features (``score_rows``), the release carries them on the ``extractor``: the same heads, two
readers.
"""
import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from valence.config import CLASSIFIER_PROBABILITY, FEATURES, PHOTO, PROBABILITY, column_of, output_name, views_scored
from valence.data.folds import check_fillable
from valence.data.labels import CLASSES, RATINGS, ratings, scale_of, targets
from valence.errors import PipelineError
from valence.learn import features, heads


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


def groups_of(rows):
    return np.array([r.get("group") or r["path"] for r in rows])


def pearson(a, b):
    """Pearson's r, 0 where either side is constant (no linear relation to measure)."""
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm else 0.0


def choose_c(x, y, groups, cs, folds, seed, class_weight="balanced", what="the training images"):
    """The classifier's (best C, {C: mean ROC AUC over the inner folds}, {C: each image's held-out P(Positive)})
    over ``folds`` stratified group folds. An inner fold holding one class has no ROC AUC: the mean is over those
    that hold both; a one-line PipelineError when none does or the folds cannot be made."""
    hint = "use more photos or a smaller train.frozen.inner_folds"
    check_fillable([CLASSES[t] for t in y], groups, folds, what, hint)
    splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(x[0], y, groups))
    scored = [i for i, (_, test) in enumerate(splits) if len(set(y[test])) == 2]
    if not scored:
        raise PipelineError(f"{what}: no inner fold of {folds} holds both classes, so no C can be scored; {hint}")
    fit = lambda x, y, c: heads.logistic(x, y, c, CLASSIFIER_PROBABILITY, class_weight)  # noqa: E731
    return heads.choose(fit, x, y, splits, cs, roc_auc_score, stronger=lambda c: -c, scored=scored)


def choose_alpha(x, rating, groups, alphas, folds, seed, what="the training images"):
    """A rating head's (best α, {α: mean Pearson r over the inner folds}, {α: each image's held-out prediction})
    over ``folds`` shuffled group folds; ties go to the stronger α."""
    if len(set(groups)) < folds:
        raise PipelineError(f"{what}: {len(set(groups))} groups of rated images cannot fill {folds} inner "
                            "folds; use more photos or a smaller train.frozen.inner_folds")
    splits = list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(rating, rating, groups))
    fit = lambda x, t, alpha: heads.ridge(x, t, alpha, "rating")  # noqa: E731
    return heads.choose(fit, x, rating, splits, alphas, lambda t, s: pearson(s, t), stronger=lambda a: a)


def fit_classifier(p, rows, store=FEATURES, live=None, what="the training images"):
    """(the classifier head, history rows, each row's P(Positive) held out by the inner fold of the chosen C)."""
    h = p.hyper
    x = features.load(store, [r["path"] for r in rows])[:h.views]
    y = targets(rows).astype(int)
    print(f"training a head on {x.shape[2]} frozen features of {len(rows)} images ({h.views} view(s)); "
          f"C from {list(h.regularization)} by {h.inner_folds} grouped inner folds")
    best, chosen_by, held_out = choose_c(x, y, groups_of(rows), h.regularization, h.inner_folds, p.seed,
                                         p.class_weight, what)
    history, fits = [], {}
    for c in sorted(h.regularization):  # ascending C: the plots draw the candidates in order, the chosen one marked
        fits[c] = heads.logistic(x, y, c, CLASSIFIER_PROBABILITY, p.class_weight)
        row = {"epoch": len(history) + 1, "phase": f"C={c:g}" + (" (chosen)" if c == best else ""), "C": c,
               **scores(y, heads.score([fits[c]], x)[CLASSIFIER_PROBABILITY]), **scores(y, held_out[c], "val_")}
        history.append({k: v if k in ("epoch", "phase", "C") else round(float(v), 6) for k, v in row.items()})
        if live is not None:
            log(live, history[-1])
            live.next_step()
    if live is not None:  # metrics.json (`dvc metrics show`, `dvc exp show`) holds the released head's scores and C
        log(live, next(r for r in history if r["C"] == best), plot=False)
    print(f"C {best:g}: the best mean ROC AUC over the inner folds "
          f"({', '.join(f'C={c:g} {auc:.4f}' for c, auc in chosen_by.items())})")
    return fits[best], history, held_out[best]


def fit_ratings(p, rows, store=FEATURES, what="the training images", rating_scale=()):
    """({rating: ridge head}, {rating: each row's prediction held out by the inner fold of the chosen α, NaN where
    unrated}) for each of RATINGS that ``rows`` carry (none for unrated data), each head fit on the rows rated
    and kept within the rating's scale (``rating_scale``, unzip.rating_scale, or the rated range)."""
    h, fitted, held_out = p.hyper, {}, {}
    for name in RATINGS:
        rating = ratings(rows, name)
        rated = ~np.isnan(rating)
        if not rated.any():
            continue
        x = np.asarray(features.load(store, [r["path"] for r, keep in zip(rows, rated) if keep])[:h.views])
        best, chosen_by, predicted = choose_alpha(x, rating[rated], groups_of(rows)[rated], h.rating_alphas,
                                                  h.inner_folds, p.seed, what)
        print(f"{name} head on {rated.sum()} rated images: α {best:g}, the best mean Pearson r over the inner folds "
              f"({', '.join(f'α={a:g} {r:.4f}' for a, r in chosen_by.items())})")
        scale = scale_of(rating, rating_scale, name)
        fitted[name] = heads.ridge(x, rating[rated], best, output_name(name, scale), within=scale)
        held_out[name] = np.full(len(rows), np.nan)
        held_out[name][rated] = predicted[best]
    return fitted, held_out


def fit_photo_check(p, photos, non_photos, threshold):
    """The photo check on (views, images, features) of ``photos`` (label 1) and ``non_photos`` (label 0), its
    line moved to 0.5 from P(photo) = ``threshold``."""
    x = np.concatenate([photos, non_photos], axis=1)
    y = np.r_[np.ones(photos.shape[1]), np.zeros(non_photos.shape[1])]
    return heads.threshold(heads.logistic(x, y, p.hyper.photo_check_c, PHOTO), threshold)


def fit_heads(p, rows, store=FEATURES, live=None, what="the training images", non_photos=(), rating_scale=(),
              photo_threshold=0.5):
    """(heads, history) of ``p.frozen`` fit on manifest ``rows``: P(Positive), the classifier's own, a head per
    rating the rows carry and, with ``non_photos`` (rows of generated images in the same store), the photo check."""
    classifier, history, held_out = fit_classifier(p, rows, store, live, what)
    rating_heads, rated_held_out = fit_ratings(p, rows, store, what, rating_scale)
    probability = heads.affine(classifier, 1.0, 0.0, PROBABILITY)  # the classifier's own, unless combined
    if p.hyper.combine_valence and "valence" in rating_heads:
        rated = ~np.isnan(rated_held_out["valence"])
        (a, b), c = heads.stack(targets(rows)[rated], [heads.logit(held_out[rated]), rated_held_out["valence"][rated]])
        probability = heads.combine([(a, classifier), (b, rating_heads["valence"])], c, PROBABILITY)
        print(f"P(Positive) = sigmoid({a:.3f} · classifier logit + {b:.3f} · predicted valence + {c:.3f}), fit on "
              f"the inner folds' held-out predictions of {rated.sum()} rated images")
    fitted = [probability, classifier, *rating_heads.values()]
    if non_photos:
        photos, generated = (features.load(store, [r["path"] for r in side])[:p.hyper.views] for side in (rows, non_photos))
        fitted.append(fit_photo_check(p, photos, generated, photo_threshold))
        print(f"photo check: {len(rows)} photos against {len(non_photos)} generated non-photos, C {p.hyper.photo_check_c:g}")
    return fitted, history


def released(fitted):
    """The heads the release carries: all but the classifier's own P(Positive), which only the folds report."""
    return [h for h in fitted if h.output != CLASSIFIER_PROBABILITY]


def score_rows(fitted, rows, store=FEATURES, flip_average=True):
    """{predictions.csv column: a value per manifest row} of ``fitted`` heads on the stored features, scored as
    the released model scores the images: view 0 is the photo, view 1 its mirror, flip averaging the mean."""
    views = features.load(store, [r["path"] for r in rows])[:views_scored(flip_average)]
    return {column_of(output): values for output, values in heads.score(fitted, views).items()}


def kinds_of_fold(kinds, fold, folds):
    """The kinds (in their first-seen order in ``kinds``) fold ``fold`` of ``folds`` holds out: kind i goes to
    fold i mod folds, so the fold stages share the leave-one-kind-out fits."""
    return list(dict.fromkeys(kinds))[fold::folds]


def kinds_never_seen(p, trained_on, non_photos, fold, folds, photo_threshold, store=FEATURES):
    """Rows (path, kind, photo_score) of the generated kinds fold ``fold`` holds out, each scored by a photo check
    trained on ``trained_on`` and every other kind: how the check does on a kind of non-photo it never saw."""
    kinds = np.array([r["kind"] for r in non_photos])
    photos, generated = (features.load(store, [r["path"] for r in side])[:p.hyper.views] for side in (trained_on, non_photos))
    rows = []
    for kind in kinds_of_fold(list(kinds), fold, folds):
        check = fit_photo_check(p, photos, generated[:, kinds != kind], photo_threshold)
        values = heads.score([check], generated[:, kinds == kind])[PHOTO]
        rows += [{**r, column_of(PHOTO): round(float(v), 6)} for r, v in zip([r for r in non_photos if r["kind"] == kind], values)]
    print(f"fold {fold}: the photo check on kinds it never saw: "
          + ", ".join(f"{k} {int((kinds == k).sum())}" for k in kinds_of_fold(list(kinds), fold, folds)))
    return rows


def extractor(p, weights="imagenet"):
    """The extractor that computed the stored features, for the release to carry the heads on
    (``heads.to_keras``)."""
    from valence import runtime

    runtime.configure(p.seed)  # threads; the extractor stays float32, as the features stage computed them
    return features.combined_extractor(p.hyper.extractors(), weights)
