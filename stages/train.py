"""Stage 7: the released model: train.model's recipe fit on every labelled image (all folds).

    python -m stages.train

The fold stages measured this recipe on data it did not see; the release is the same recipe on all of it, so
evaluate's out-of-fold headline is its estimate (trained on 5/4 as many photos as each fold's model). Reads data/split/folds.csv and the images it
lists (with train.model frozen: their features in data/features, C chosen by grouped inner CV over all of
them, valence.learn.train_on_features, with train.frozen.combine_valence and rated images P(Positive) from the
classifier and the valence head together; other models carve their validation slice for early stopping from these images, as
each fold does). Writes models/model.keras (self-contained: RGB float32 0–255 in, at the model's input size (an own model's
section, or the registry's for a backbone), P(Positive) out; with train.model frozen and rated images also each rating, named with its
scale (unzip.rating_scale, or the rated range), e.g. valence_1_to_7, from ridge heads fit on every rated image, and
"photo", the photo check trained against data/non_photos: below 0.5, not like the photos it learnt from, at
evaluate.photo_threshold), models/heads.json (the same heads as values: valence.learn.heads, which the fold
stages score on stored features and export checks the release against), models/trained_on.csv (the images it learnt from), plots/train/learning_curves.png and,
through dvclive, dvclive/train/: metrics.json (the latest epoch's loss, accuracy and AUC, train and
validation, its step and phase: `dvc exp show` shows it while training runs) and plots/metrics/ (one TSV a
metric, a row an epoch — for frozen, a row a C candidate — for `dvc plots show`).
"""
from valence import __version__, config, params, train_params
from valence.data.folds import FOLD_COLUMNS
from valence.data.labels import targets
from valence.errors import run_stage
from valence.files import atomic_path, digest_of, read_csv, write_csv, write_json
from valence.registry import FROZEN_MODEL


def made_from(p, rows, mapping):
    """What the model file carries of its making (valence.use.provenance): this package's version, the recipe, its
    settings and seed, the labels' md5 and count, the calibration map. Only inputs: the same inputs, the same bytes."""
    import dataclasses

    return {"made_by": "valence train", "valence_version": __version__, "model": p.model, "seed": p.seed,
            "class_weight": p.class_weight, "settings": dataclasses.asdict(p.hyper),
            "trained_on": {"file": str(config.FOLDS), "images": len(rows), "md5": digest_of(config.FOLDS, "md5")},
            "calibration": dict(zip("abc", mapping)) if p.calibrate else None}


def main():
    p = train_params.load()
    rows = read_csv(config.FOLDS, required=FOLD_COLUMNS)
    from dvclive import Live  # TensorFlow and dvclive load only after params and inputs are checked

    from valence.learn import calibration, heads, models, train_on_features, train_on_images
    from valence.report import figures
    from valence.use import provenance
    from valence.report.evaluation import out_of_fold_rows

    # dvcyaml=False: dvc.yaml declares these files by hand (outputs, metrics, plot definitions)
    with Live(str(config.TRAIN_LIVE), dvcyaml=False, save_dvc_exp=False) as live:
        live.step = 1  # step = epoch, counted from 1 as Keras prints them
        if p.model == FROZEN_MODEL:  # heads on data/features: one step per C candidate
            fitted, history = train_on_features.fit_heads(
                p, rows, live=live, what="all labelled images", rating_scale=params.load("unzip").rating_scale,
                non_photos=read_csv(config.NON_PHOTOS_INDEX, required=["path", "kind"]),
                photo_threshold=params.load("evaluate").photo_threshold)
            extractor, fitted = train_on_features.extractor(p), train_on_features.released(fitted)
        else:
            model, history = train_on_images.train(p, rows, live=live)
            extractor, fitted = heads.of_last_unit(model, config.PROBABILITY)
    mapping, scored = calibration.IDENTITY, []
    if p.calibrate:  # the beta map fit on every fold's held-out predictions: one more map of the P(Positive) head
        scored = out_of_fold_rows(rows)
        mapping = calibration.fit(targets(scored), [r[config.PROBABILITY] for r in scored])
        fitted = [heads.calibrated(h, mapping) if h.output == config.PROBABILITY else h for h in fitted]
        print("calibrated: P(Positive) = sigmoid({:.4f} · ln p − {:.4f} · ln(1 − p) + {:.4f}), fit on the "
              "out-of-fold predictions of {} images".format(*mapping, len(scored)))
    write_json(config.CALIBRATION, {**dict(zip("abc", (round(v, 6) for v in mapping))), "images": len(scored)})
    release = heads.to_keras(extractor, fitted, p.model)  # the one way heads enter Keras
    with atomic_path(config.MODEL, suffix=".keras") as tmp:
        models.save(release, tmp)  # byte-identical for the same inputs
        provenance.embed(tmp, made_from(p, rows, mapping))  # a copy anywhere still says what made it
    heads.save(fitted, config.HEADS)
    write_csv(config.TRAINED_ON, rows, FOLD_COLUMNS)
    figures.learning_curves(history, config.LEARNING_CURVES)
    steps = "C candidates" if p.model == FROZEN_MODEL else "epochs"
    print(f"wrote {config.MODEL} and {config.HEADS}, trained on all {len(rows)} labelled images, after "
          f"{len(history)} {steps}")


if __name__ == "__main__":
    run_stage(main)
