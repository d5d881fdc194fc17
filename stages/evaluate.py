"""Stage 8: the headline from out-of-fold predictions: every labelled image, scored once by a model that never saw
its group.

    python -m stages.evaluate

Reads data/split/folds.csv (with the rated valence and arousal, where the data has them) and the fold stages'
data/oof/fold*/predictions.csv. Checks that every labelled image was scored exactly once, in its own fold.
With train.calibrate, each fold's probabilities are mapped by the Platt map fit on the other folds' (cross-
fitting: what the release's map, fit on all of them, does to photos it never saw). Writes, through dvclive,
dvclive/evaluate/: metrics.json (`dvc metrics show`): out_of_fold (ROC AUC, average precision and Spearman's ρ
with the rated valence of the ranking, which one increasing map leaves alone; accuracy, balanced accuracy at
evaluate.threshold, Brier score, expected calibration error and the mean P(Positive) of the calibrated
probabilities; the majority baseline), uncalibrated (the same calibration scores of the fold models' own
probabilities) and per_fold (each metric's mean and std over the folds, and each fold's ROC AUC);
plots/sklearn/ (ROC of all images and of each fold, precision–recall, reliability curves and the confusion
matrix, for `dvc plots show`); beside them per_class.json. Where the fold stages predicted ratings, metrics.json's
ratings holds, for each, Pearson's r, Spearman's ρ and the mean absolute error against the raters' means, r's
mean and std over the folds; roc_auc_by_score the ROC AUC of ranking the labels by each score P(Positive) is made
from (the classifier's own and, where rated, the valence head's: the default combines them, train.frozen);
photo_check (with the frozen model's photo check) the share of labelled photos it flags out of fold at
the photo score's line, 0.5 (P(photo) = evaluate.photo_threshold, folded into the heads) and, for each generated kind of non-photo (data/oof/fold*/non_photos.csv), the share
flagged by a check that never saw that kind; plots/custom/ratings_*.json
the predicted-against-rated scatter (empty without ratings). Under plots/eval/: predictions.csv (a row per
labelled image, calibrated P(Positive); the mistakes stage draws the worst of them) and the ROC,
precision–recall, confusion and reliability PNGs. Needs no TensorFlow: seconds.
"""

import numpy as np

from valence import config, params, train_params
from valence.config import CLASSIFIER_PROBABILITY, PHOTO_SCORE, PROBABILITY, predicted_column
from valence.data.folds import FOLD_COLUMNS
from valence.data.labels import RATINGS, ratings, targets
from valence.errors import run_stage
from valence.files import read_csv, write_csv, write_json
from valence.report import evaluation

LIVE, PLOTS = config.EVALUATE_LIVE, config.EVAL_PLOTS


def main():
    p, train = params.load("evaluate"), train_params.load()
    rows = evaluation.out_of_fold_rows(read_csv(config.FOLDS, required=FOLD_COLUMNS))
    from dvclive import Live

    from valence.learn import calibration
    from valence.report import figures

    y, raw = targets(rows), np.array([r[PROBABILITY] for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    # what the release gives, measured honestly: each fold mapped by the Platt map of the other folds' predictions
    probability = calibration.cross_fitted(y, raw, folds)[0] if train.calibrate else raw
    result = evaluation.out_of_fold(y, probability, folds, p.threshold, [r.get("valence") for r in rows],
                                    ranking=raw)  # ROC AUC, AP and ρ: one increasing map leaves the ranking as it is
    result["mean_probability"] = round(float(probability.mean()), 6)
    # the ECE perfectly calibrated probabilities reach by chance on these photos: below its p95, within noise
    chance = {name: calibration.null_ece(y, scores, train.seed) for name, scores in (("after", probability), ("before", raw))}
    result.update({f"ece_{k}": v for k, v in chance["after"].items() if k != "ece"})
    before = evaluation.binary_metrics(y, raw, p.threshold)
    uncalibrated = {**{k: before[k] for k in ("brier", "ece", "balanced_accuracy", "accuracy")},
                    **{f"ece_{k}": v for k, v in chance["before"].items() if k != "ece"},
                    "mean_probability": round(float(raw.mean()), 6)}
    selective, coverage_curve = evaluation.selective(y, probability, p.threshold)
    uncertain = {**evaluation.uncertain_scores(y, probability, p.threshold, p.uncertain_band),
                 "narrowest_band": evaluation.narrowest_band(y, probability, p.threshold),  # the rule, on all photos
                 "cross_fitted": evaluation.band_cross_fitted(y, probability, folds, p.threshold)}
    fold_curves = {f"fold {k}": (y[folds == k], raw[folds == k]) for k in np.unique(folds)}  # ranking curves: raw
    per_fold = result.pop("folds")  # each metric's mean and std over the folds; beside them each fold's ROC AUC
    rated = {name: (ratings(rows, name), np.array([r[predicted_column(name)] for r in rows])) for name in RATINGS}
    rating_scores = {name: evaluation.rating_scores(*pair, folds) for name, pair in rated.items()}
    rating_scores = {name: scores for name, scores in rating_scores.items() if scores is not None}
    # the ROC AUC on the labels of each score P(Positive) can be made from: the classifier's own, the valence head's
    sources = {"classifier": np.array([r[CLASSIFIER_PROBABILITY] for r in rows]),
               **({"valence_head": rated["valence"][1]} if "valence" in rating_scores else {})}
    by_score = {name: evaluation.binary_metrics(y, raw, p.threshold, scores)["roc_auc"]
                for name, scores in sources.items()}
    non_photos = [r for file in sorted(config.OOF.glob(f"fold*/{config.UNSEEN_KINDS_CSV}"))
                  for r in read_csv(file, required=["path", "kind", PHOTO_SCORE])]
    photo_check = evaluation.photo_check_scores([r[PHOTO_SCORE] for r in rows], non_photos, p.photo_threshold)
    predictions = [{**row, "fold": r["fold"]} for row, r in
                   zip(evaluation.prediction_rows([r["path"] for r in rows], y, probability, p.threshold), rows)]
    # dvcyaml=False: dvc.yaml declares these files by hand (outputs, metrics, plot definitions)
    with Live(str(LIVE), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(out_of_fold=result, uncalibrated=uncalibrated, selective=selective, uncertain=uncertain,
                            per_fold=per_fold, roc_auc_by_score=by_score,
                            **({"ratings": rating_scores} if rating_scores else {}),
                            **({"photo_check": photo_check} if photo_check else {}))
        for name in RATINGS:  # predicted against rated, a point an image (none without ratings): `dvc plots show`
            points = [{"path": r["path"], "rated": float(a), "predicted": round(float(b), 6), "fold": r["fold"]}
                      for r, a, b in zip(rows, *rated[name]) if not (np.isnan(a) or np.isnan(b))]
            live.log_plot(f"ratings_{name}", points, x="rated", y="predicted", template="scatter")
        live.log_plot("selective", coverage_curve, x="coverage", y="accuracy", template="linear")
        live.log_sklearn_plot("roc", y, raw, name="roc/out_of_fold")
        for name, (y_fold, p_fold) in fold_curves.items():
            live.log_sklearn_plot("roc", y_fold, p_fold, name=f"roc/{name.replace(' ', '')}")
        live.log_sklearn_plot("precision_recall", y, raw, name="precision_recall/out_of_fold")
        for name, scores in (("out_of_fold", probability), ("uncalibrated", raw)):
            live.log_sklearn_plot("calibration", y, scores, name=f"calibration/{name}", n_bins=10)
        live.log_sklearn_plot("confusion_matrix", [r["actual"] for r in predictions],
                              [r["predicted"] for r in predictions], name="confusion_matrix/out_of_fold")
    write_json(LIVE / "per_class.json", {"out_of_fold": evaluation.per_class(y, probability, p.threshold)})
    write_csv(config.EVAL_PREDICTIONS, predictions, ["path", "fold", "actual", "predicted", PROBABILITY])
    figures.roc({"all images, out-of-fold": (y, raw), **fold_curves}, PLOTS / "roc.png")
    figures.precision_recall(y, raw, PLOTS / "precision_recall.png")
    figures.confusion_matrix(evaluation.confusion(y, probability, p.threshold), PLOTS / "confusion_matrix.png")
    name = "calibrated, cross-fitted" if train.calibrate else "P(Positive)"
    figures.reliability({f"{name} (ECE {result['ece']:.3f}, chance's p95 {result['ece_null_p95']:.3f})":
                         calibration.reliability(y, probability),
                         **({f"uncalibrated (ECE {uncalibrated['ece']:.3f})": calibration.reliability(y, raw)}
                            if train.calibrate else {})}, PLOTS / "reliability.png")
    print(f"out-of-fold ({len(rows)} images in {len(fold_curves)} folds): "
          + ", ".join(f"{k} {v}" for k, v in result.items()))
    print(f"calibration ({'cross-fitted beta map' if train.calibrate else 'none'}): Brier {result['brier']:.4f}, ECE "
          f"{result['ece']:.4f} (by chance: median {result['ece_null_median']:.4f}, p95 {result['ece_null_p95']:.4f}; "
          f"p = {result['ece_p_value']:.3f}), mean P(Positive) {result['mean_probability']:.3f} (uncalibrated: Brier "
          f"{uncalibrated['brier']:.4f}, ECE {uncalibrated['ece']:.4f}, p = {uncalibrated['ece_p_value']:.3f}, mean "
          f"{uncalibrated['mean_probability']:.3f}; Positive share {y.mean():.3f})")
    crossed = uncertain["cross_fitted"]
    print("accuracy of the most confident 50 / 80 / 100 %: " + " / ".join(f"{v:.3f}" for v in selective.values())
          + f"; Uncertain within {p.uncertain_band:g} of {p.threshold:g}: {uncertain['uncertain_share']:.1%} of photos, "
          f"the rest {uncertain['accuracy_labelled']} accurate (all: {uncertain['accuracy_all']:.3f}); the narrowest "
          f"band {evaluation.BAND_LIFT:.0%} more accurate: {uncertain['narrowest_band']} (cross-fitted: "
          f"{crossed['uncertain_share']:.1%} Uncertain, the rest {crossed['accuracy_labelled']} accurate)")
    print("ROC AUC by score: " + ", ".join(f"{k} {v:.4f}" for k, v in by_score.items())
          + f"; P(Positive) {result['roc_auc']:.4f}")
    if photo_check:
        print(f"photo check (photo score below {config.PHOTO_LINE}: P(photo) below {p.photo_threshold}): "
              f"{photo_check['photos_flagged']} of "
              f"{photo_check['photos']} labelled photos flagged out of fold; each generated kind, by a check that "
              "never saw it: " + ", ".join(f"{k} {v:.2f}" for k, v in photo_check["kinds_flagged"].items()))
    print("per fold: " + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in per_fold.items() if "mean" in v))
    for name, s in rating_scores.items():
        spread = s["folds"]["pearson_r"]
        print(f"{name} out of fold ({s['images']} rated images): Pearson r {s['pearson_r']:.3f}"
              + (f" (per fold {spread['mean']:.3f} ± {spread['std']:.3f})" if spread else "")
              + f", Spearman ρ {s['spearman']:.3f}, MAE {s['mae']:.3f}")


if __name__ == "__main__":
    run_stage(main)
