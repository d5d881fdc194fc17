"""Stage 6: train on every fold but one and score the one held out (dvc.yaml runs it once per fold: fold@0 …).

    python -m stages.fold 3

Reads data/split/folds.csv and, for train.model frozen, data/features (the head is a few seconds of
scikit-learn, C chosen by grouped CV inside the training folds); other models train on the images, as the
release does (their own validation slice, carved from the training folds, for early stopping). Writes
data/oof/fold<k>/: predictions.csv (each held-out image's path, label, group, fold and P(Positive), scored as
predict scores: evaluate.flip_average averages it with its mirror image's; with train.model frozen, the heads
of valence.learn.train_on_features: the classifier's own P(Positive) beside the combined one, each predicted
rating, and the photo score, below 0.5 not a photo, the same number predict writes), trained_on.csv (the
images the fold's model learnt from) and non_photos.csv (the generated kinds this fold holds out, each scored
by a photo check that never saw its kind). No held-out image shares a group with a training one: checked, not assumed. A fold
number the split did not make (split.test_size gives fewer folds than dvc.yaml lists) writes empty files.
"""
import sys

from valence import config, params, train_params
from valence.data.folds import FOLD_COLUMNS, fold_sides
from valence.data.labels import RATINGS
from valence.errors import PipelineError, run_stage
from valence.files import atomic_dir, read_csv, write_csv
from valence.registry import FROZEN_MODEL

PREDICTION_COLUMNS = (FOLD_COLUMNS + [config.PROBABILITY, config.CLASSIFIER_PROBABILITY]
                      + [config.predicted_column(name) for name in RATINGS] + [config.PHOTO_SCORE])


def held_out_scores(p, scoring, rating_scale, trained_on, held_out, what="the training images", non_photos=()):
    """{column: a value per held-out row} from a model of ``p.model`` trained on ``trained_on``: P(Positive), the
    classifier's own (the same unless frozen heads combine it with the valence head) and, from frozen heads, each
    predicted rating (rated images) and the photo score (the photo check trained against ``non_photos``)."""
    if p.model == FROZEN_MODEL:
        from valence.learn import train_on_features

        fitted, _ = train_on_features.fit_heads(p, trained_on, what=what, non_photos=non_photos,
                                                rating_scale=rating_scale, photo_threshold=scoring.photo_threshold)
        return train_on_features.score_rows(fitted, held_out, flip_average=scoring.flip_average)
    from valence.data.images import load_images
    from valence.learn import train_on_images
    from valence.use.classifier import KerasClassifier
    from valence.use.predict import score_batches

    model, _ = train_on_images.train(p, trained_on)
    classifier = KerasClassifier(model)  # the scoring predict and serve use
    images = load_images([r["path"] for r in held_out], classifier.height, classifier.width, desc="held out")
    probability = score_batches(classifier, images, scoring.batch_size, scoring.flip_average, "scoring the held-out fold")
    return {config.PROBABILITY: probability, config.CLASSIFIER_PROBABILITY: probability}


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise PipelineError("usage: python -m stages.fold <fold number, 0 or more>")
    fold = int(sys.argv[1])
    p, scoring, rating_scale = train_params.load(), params.load("evaluate"), params.load("unzip").rating_scale
    rows = read_csv(config.FOLDS, required=FOLD_COLUMNS)
    non_photos = read_csv(config.NON_PHOTOS_INDEX, required=["path", "kind"]) if p.model == FROZEN_MODEL else []
    trained_on, held_out = fold_sides(rows, fold)
    predictions, unseen_kinds = [], []
    if held_out:
        print(f"fold {fold}: training {p.model} on {len(trained_on)} images, scoring {len(held_out)} held out")
        scored = held_out_scores(p, scoring, rating_scale, trained_on, held_out,
                                 f"fold {fold}'s training images (the other folds)", non_photos)
        predictions = [{**r, **{column: float(v[i]) if column.endswith("probability") else round(float(v[i]), 6)
                                for column, v in scored.items()}} for i, r in enumerate(held_out)]
        if non_photos:  # the kinds this fold holds out: each scored by a photo check that never saw its kind
            from valence.learn.train_on_features import kinds_never_seen

            unseen_kinds = kinds_never_seen(p, trained_on, non_photos, fold, len({r["fold"] for r in rows}),
                                            scoring.photo_threshold)
    else:
        print(f"fold {fold}: {config.FOLDS} has no fold {fold} (split.test_size makes fewer): nothing to score")
    with atomic_dir(config.fold_dir(fold)) as tmp:  # every file or none
        write_csv(tmp / config.PREDICTIONS_CSV, predictions, PREDICTION_COLUMNS)
        write_csv(tmp / config.TRAINED_ON_CSV, trained_on if held_out else [], FOLD_COLUMNS)
        write_csv(tmp / config.UNSEEN_KINDS_CSV, unseen_kinds, ["path", "kind", config.PHOTO_SCORE])
    print(f"wrote {config.fold_dir(fold)}: {len(predictions)} held-out predictions")


if __name__ == "__main__":
    run_stage(main)
