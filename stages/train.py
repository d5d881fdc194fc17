"""Stage 7: the released model: train.model's recipe fit on every labelled image (all folds).

    python -m stages.train

The fold stages measured this recipe on data it did not see; the release is the same recipe on all of it, so
evaluate's out-of-fold headline is its estimate (trained on 5/4 as many photos as each fold's model). Reads data/split/folds.csv and the images it
lists (with train.model frozen: their features in data/features, C chosen by grouped inner CV over all of
them, valence.learn.train_on_features, with train.frozen.combine_valence and rated images P(Positive) from the
classifier and the valence head together; other models carve their validation slice for early stopping from these images, as
each fold does). Writes models/model.keras (self-contained: RGB float32 0–255 at train.<model>.image_height ×
image_width in, P(Positive) out; with train.model frozen and rated images also each rating, named with its
scale (unzip.rating_scale, or the rated range), e.g. valence_1_to_7, from ridge heads fit on every rated image, and
"photo", the photo check trained against data/non_photos: below 0.5, not like the photos it learnt from, at
evaluate.photo_threshold), models/trained_on.csv (the images it learnt from), plots/train/learning_curves.png and,
through dvclive, dvclive/train/: metrics.json (the latest epoch's loss, accuracy and AUC, train and
validation, its step and phase: `dvc exp show` shows it while training runs) and plots/metrics/ (one TSV a
metric, a row an epoch — for frozen, a row a C candidate — for `dvc plots show`).
"""
from valence import params
from valence.data.folds import FOLD_COLUMNS
from valence.data.labels import ratings, targets
from valence.errors import run_stage
from valence.files import atomic_path, read_csv, write_csv, write_json
from valence.registry import FROZEN_MODEL

LIVE = "dvclive/train"
NON_PHOTOS = "data/non_photos/index.csv"  # generated non-photos: the photo check learns to flag their like


def main():
    p = params.load("train")
    rows = read_csv("data/split/folds.csv", required=FOLD_COLUMNS)
    from dvclive import Live  # TensorFlow and dvclive load only after params and inputs are checked

    from valence.learn import calibration, train_on_features, train_on_images
    from valence.report.evaluation import out_of_fold_rows
    from valence.report import figures

    # dvcyaml=False: dvc.yaml declares these files by hand (outputs, metrics, plot definitions)
    with Live(LIVE, dvcyaml=False, save_dvc_exp=False) as live:
        live.step = 1  # step = epoch, counted from 1 as Keras prints them
        heads = None
        if p.model == FROZEN_MODEL:  # heads on data/features: one step per C candidate
            model, heads = train_on_features.train(p, rows, live=live,
                                                   non_photos=read_csv(NON_PHOTOS, required=["path", "kind"]))
            history = heads.history
        else:
            model, history = train_on_images.train(p, rows, live=live)
    mapping, scored = calibration.IDENTITY, []
    if p.calibrate:  # the map fit on every fold's held-out predictions, folded into the sigmoid layer
        scored = out_of_fold_rows(rows)
        mapping = calibration.fit(targets(scored), [r["probability"] for r in scored])
        calibration.fold_into(model, mapping)
        print(f"calibrated: P(Positive) = sigmoid({mapping[0]:.4f} · logit + {mapping[1]:.4f}), fit on the "
              f"out-of-fold predictions of {len(scored)} images")
    write_json(f"{LIVE}/calibration.json", {"slope": round(mapping[0], 6), "intercept": round(mapping[1], 6),
                                           "images": len(scored)})
    if heads and heads.ratings:  # beside P(Positive), after its calibration: a unit per rating the images carry
        from valence.learn import rating_heads

        declared = params.load("unzip").rating_scale
        model = rating_heads.with_ratings(model, heads.ratings, {n: rating_heads.scale_of(ratings(rows, n), declared, n)
                                                                 for n in heads.ratings})
    if heads and heads.photo is not None:  # and the photo check, its threshold at 0.5
        from valence.learn import photo_check

        model = photo_check.with_photo_check(model, heads.photo, params.load("evaluate").photo_threshold)
    with atomic_path("models/model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    write_csv("models/trained_on.csv", rows, FOLD_COLUMNS)
    figures.learning_curves(history, "plots/train/learning_curves.png")
    steps = "C candidates" if p.model == FROZEN_MODEL else "epochs"
    print(f"wrote models/model.keras, trained on all {len(rows)} labelled images, after {len(history)} {steps}")


if __name__ == "__main__":
    run_stage(main)
