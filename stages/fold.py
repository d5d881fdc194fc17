"""Stage 6: train on every fold but one and score the one held out (dvc.yaml runs it once per fold: fold@0 …).

    python -m stages.fold 3

Reads data/split/folds.csv and, for train.model frozen, data/features (the head is a few seconds of
scikit-learn, C chosen by grouped CV inside the training folds); other models train on the images, as the
release does (their own validation slice, carved from the training folds, for early stopping). Writes
data/oof/fold<k>/: predictions.csv (each held-out image's path, label, group, fold and P(Positive), scored as
predict scores: evaluate.flip_average averages it with its mirror image's; with train.model frozen and rated
images, also its predicted valence and arousal from ridge heads, α chosen by grouped inner CV, and with
train.frozen.combine_valence P(Positive) is the classifier and the valence head together, the classifier's own
beside it as classifier_probability) and
trained_on.csv (the images the fold's model learnt from). No held-out image shares a group with a training one: checked, not assumed. A fold
number the split did not make (split.test_size gives fewer folds than dvc.yaml lists) writes empty files.
"""
import sys

from valence import params
from valence.data.folds import FOLD_COLUMNS, fold_sides
from valence.data.labels import RATINGS
from valence.errors import PipelineError, run_stage
from valence.files import atomic_dir, read_csv, write_csv
from valence.registry import FROZEN_MODEL

PREDICTION_COLUMNS = (FOLD_COLUMNS + ["probability", "classifier_probability"] + [f"predicted_{name}" for name in RATINGS]
                      + ["photo_score"])
NON_PHOTOS = "data/non_photos/index.csv"


def held_out_scores(p, flip_average, batch_size, trained_on, held_out, what="the training images", non_photos=()):
    """{column: a value per held-out row} from a model of ``p.model`` trained on ``trained_on``: P(Positive)
    ("probability"), the classifier's own ("classifier_probability": the same unless frozen heads combine it with
    the valence head) and, from frozen heads, each predicted rating ("predicted_valence", …, rated images) and
    P(photo) ("photo_score", from the photo check trained against ``non_photos``)."""
    if p.model == FROZEN_MODEL:
        from valence.learn import train_on_features

        heads = train_on_features.fit_heads(p, trained_on, what=what, non_photos=non_photos)
        return train_on_features.score(heads, held_out, flip_average=flip_average)
    from valence.data.images import load_images
    from valence.learn import train_on_images
    from valence.use.classifier import KerasClassifier
    from valence.use.predict import score_batches

    model, _ = train_on_images.train(p, trained_on)
    classifier = KerasClassifier(model)  # the scoring predict and serve use
    images = load_images([r["path"] for r in held_out], classifier.height, classifier.width, desc="held out")
    probability = score_batches(classifier, images, batch_size, flip_average, "scoring the held-out fold")
    return {"probability": probability, "classifier_probability": probability}


def kinds_never_seen(p, trained_on, non_photos, fold, folds):
    """Rows (path, kind, photo_score) of the generated kinds fold ``fold`` holds out (kind i: fold i mod
    ``folds``), each scored by a photo check trained on ``trained_on`` and every other kind."""
    from valence.learn import features, photo_check

    kinds = [r["kind"] for r in non_photos]
    photos, generated = (features.load("data/features", [r["path"] for r in side])[:p.hyper.views]
                         for side in (trained_on, non_photos))
    scores = photo_check.leave_one_kind_out(photos, generated, kinds, p.hyper.photo_check_c,
                                            photo_check.kinds_of_fold(kinds, fold, folds))
    rows = [{**r, "photo_score": round(float(v), 6)} for kind, values in scores.items()
            for r, v in zip([r for r in non_photos if r["kind"] == kind], values)]
    print(f"fold {fold}: the photo check on kinds it never saw: " + ", ".join(f"{k} {len(v)}" for k, v in scores.items()))
    return rows


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise PipelineError("usage: python -m stages.fold <fold number, 0 or more>")
    fold = int(sys.argv[1])
    p, scoring = params.load("train"), params.load("evaluate")
    rows = read_csv("data/split/folds.csv", required=FOLD_COLUMNS)
    non_photos = read_csv(NON_PHOTOS, required=["path", "kind"]) if p.model == FROZEN_MODEL else []
    trained_on, held_out = fold_sides(rows, fold)
    predictions, unseen_kinds = [], []
    if held_out:
        print(f"fold {fold}: training {p.model} on {len(trained_on)} images, scoring {len(held_out)} held out")
        scored = held_out_scores(p, scoring.flip_average, scoring.batch_size, trained_on, held_out,
                                 f"fold {fold}'s training images (the other folds)", non_photos)
        predictions = [{**r, **{column: float(v[i]) if column.endswith("probability") else round(float(v[i]), 6)
                                for column, v in scored.items()}} for i, r in enumerate(held_out)]
        if non_photos:  # the kinds this fold holds out: each scored by a photo check that never saw its kind
            unseen_kinds = kinds_never_seen(p, trained_on, non_photos, fold, len({r["fold"] for r in rows}))
    else:
        print(f"fold {fold}: data/split/folds.csv has no fold {fold} (split.test_size makes fewer): nothing to score")
    with atomic_dir(f"data/oof/fold{fold}") as tmp:  # both files or neither
        write_csv(tmp / "predictions.csv", predictions, PREDICTION_COLUMNS)
        write_csv(tmp / "trained_on.csv", trained_on if held_out else [], FOLD_COLUMNS)
        write_csv(tmp / "non_photos.csv", unseen_kinds, ["path", "kind", "photo_score"])
    print(f"wrote data/oof/fold{fold}: {len(predictions)} held-out predictions")


if __name__ == "__main__":
    run_stage(main)
