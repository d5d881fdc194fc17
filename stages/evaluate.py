"""Stage 8: the headline from out-of-fold predictions: every labelled image, scored once by a model that never saw
its group.

    python -m stages.evaluate

Reads data/split/folds.csv, the fold stages' data/oof/fold*/predictions.csv and data/labels.csv (the rated
valence, where the archive has one). Checks that every labelled image was scored exactly once, in its own fold.
Writes, through dvclive, dvclive/evaluate/: metrics.json (`dvc metrics show`): out_of_fold (ROC AUC, balanced
accuracy, accuracy, average precision and the majority baseline over all images; Spearman's ρ between
P(Positive) and the rated valence) and per_fold (each metric's mean and std over the folds, and each fold's ROC
AUC); plots/sklearn/ (ROC of all images and of each fold, precision–recall and confusion matrix of all, for
`dvc plots show`); beside them per_class.json (each class's precision, recall, f1 and support). Under
plots/eval/: predictions.csv (a row per labelled image; the mistakes stage draws the worst of them) and the
ROC, precision–recall and confusion PNGs. Needs no TensorFlow: seconds.
"""
from pathlib import Path

import numpy as np

from valence import params
from valence.data.folds import FOLD_COLUMNS
from valence.data.labels import targets
from valence.errors import PipelineError, run_stage
from valence.files import read_csv, write_csv, write_json

LIVE = "dvclive/evaluate"
PLOTS = "plots/eval"
OOF = Path("data/oof")


def out_of_fold_rows(labelled):
    """The fold stages' predictions in ``labelled``'s order; every image exactly once, in its own fold."""
    files = sorted(OOF.glob("fold*/predictions.csv"))
    predicted = {}
    for file in files:
        for r in read_csv(file, required=FOLD_COLUMNS + ["probability"]):
            if r["path"] in predicted:
                raise PipelineError(f"{file}: {r['path']} was already scored by {predicted[r['path']]['file']}")
            predicted[r["path"]] = {**r, "file": file}
    missing = [r for r in labelled if r["path"] not in predicted]
    if missing:
        folds = sorted({r["fold"] for r in missing}, key=int)
        raise PipelineError(f"{OOF}: no out-of-fold prediction for {len(missing)} labelled image(s) of fold(s) "
                            f"{', '.join(folds)} (first {missing[0]['path']}); dvc.yaml's fold matrix must list "
                            "every fold split.test_size makes (round(1 / test_size))")
    for r in labelled:
        if predicted[r["path"]]["fold"] != r["fold"]:
            raise PipelineError(f"{predicted[r['path']]['file']}: {r['path']} is in fold {r['fold']} of "
                                "data/split/folds.csv; run the fold stages again (dvc repro)")
    extra = predicted.keys() - {r["path"] for r in labelled}
    if extra:
        raise PipelineError(f"{OOF}: {len(extra)} prediction(s) of images not in data/split/folds.csv "
                            f"(first {sorted(extra)[0]}); run the fold stages again (dvc repro)")
    try:
        return [{**r, "probability": float(predicted[r["path"]]["probability"])} for r in labelled]
    except ValueError:
        raise PipelineError(f"{OOF}: a probability is not a number; run the fold stages again (dvc repro)") from None


def main():
    p = params.load("evaluate")
    rows = out_of_fold_rows(read_csv("data/split/folds.csv", required=FOLD_COLUMNS))
    labels = Path("data/labels.csv")  # the rated valence, for Spearman's ρ, where the archive has one
    valence = {r["path"]: r.get("valence") for r in read_csv(labels, required=["path"])} if labels.exists() else {}
    from dvclive import Live

    from valence.report import evaluation, figures

    y, probability = targets(rows), np.array([r["probability"] for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    result = evaluation.out_of_fold(y, probability, folds, p.threshold, [valence.get(r["path"]) for r in rows])
    fold_curves = {f"fold {k}": (y[folds == k], probability[folds == k]) for k in np.unique(folds)}
    per_fold = result.pop("folds")  # each metric's mean and std over the folds; beside them each fold's ROC AUC
    predictions = [{**row, "fold": r["fold"]} for row, r in
                   zip(evaluation.prediction_rows([r["path"] for r in rows], y, probability, p.threshold), rows)]
    # dvcyaml=False: dvc.yaml declares these files by hand (outputs, metrics, plot definitions)
    with Live(LIVE, dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(out_of_fold=result, per_fold=per_fold)
        live.log_sklearn_plot("roc", y, probability, name="roc/out_of_fold")
        for name, (y_fold, p_fold) in fold_curves.items():
            live.log_sklearn_plot("roc", y_fold, p_fold, name=f"roc/{name.replace(' ', '')}")
        live.log_sklearn_plot("precision_recall", y, probability, name="precision_recall/out_of_fold")
        live.log_sklearn_plot("confusion_matrix", [r["actual"] for r in predictions],
                              [r["predicted"] for r in predictions], name="confusion_matrix/out_of_fold")
    write_json(f"{LIVE}/per_class.json", {"out_of_fold": evaluation.per_class(y, probability, p.threshold)})
    write_csv(f"{PLOTS}/predictions.csv", predictions, ["path", "fold", "actual", "predicted", "probability"])
    figures.roc({"all images, out-of-fold": (y, probability), **fold_curves}, f"{PLOTS}/roc.png")
    figures.precision_recall(y, probability, f"{PLOTS}/precision_recall.png")
    figures.confusion_matrix(evaluation.confusion(y, probability, p.threshold), f"{PLOTS}/confusion_matrix.png")
    print(f"out-of-fold ({len(rows)} images in {len(fold_curves)} folds): "
          + ", ".join(f"{k} {v}" for k, v in result.items()))
    print("per fold: " + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in per_fold.items() if "mean" in v))


if __name__ == "__main__":
    run_stage(main)
