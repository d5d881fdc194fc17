"""Stage 7: score the trained model on the test manifest, and on the training manifest for comparison.

    python stages/evaluate.py

Reads models/model.keras, data/split/test.csv and data/split/train.csv. Writes, through dvclive,
dvclive/evaluate/: metrics.json (the headline scores of both splits: `dvc metrics show`) and plots/sklearn/
(ROC of both splits, precision–recall and confusion matrix of the test split, for `dvc plots show`); beside
them per_class.json (each class's precision, recall, f1 and support). Under plots/eval/: predictions.csv (a
row per test image) and PNGs, among them mistakes.png: the test split's most confident false positives and
false negatives with their probability and rated valence (from data/labels.csv).
"""
from pathlib import Path

import _path  # noqa: F401
from valence import params
from valence.errors import run_stage
from valence.files import read_csv, write_csv, write_json
from valence.labels import targets
from valence.splitting import MANIFEST_COLUMNS

LIVE = "dvclive/evaluate"
PLOTS = "plots/eval"


def main():
    p = params.load("evaluate")
    splits = {name: read_csv(f"data/split/{name}.csv", required=MANIFEST_COLUMNS) for name in ("test", "train")}
    labels = Path("data/labels.csv")  # for the rated valence shown beside each mistake, where there is one
    valence = {r["path"]: r.get("valence") for r in read_csv(labels, required=["path"])} if labels.exists() else {}
    from dvclive import Live  # TensorFlow and dvclive load only after the inputs are checked

    from valence import evaluation, plotting
    from valence.classifier import open_classifier
    from valence.images import load_images
    from valence.predict import score_batches

    model = open_classifier("models/model.keras")  # the same scoring as predict and serve
    truth = {name: targets(rows) for name, rows in splits.items()}
    probability = {name: score_batches(model, load_images([r["path"] for r in rows], model.height, model.width,
                                                          desc=name), p.batch_size, p.flip_average, f"scoring {name}")
                   .astype(float)  # Python floats in dvclive's JSON
                   for name, rows in splits.items()}
    y_test, p_test = truth["test"], probability["test"]
    predictions = evaluation.prediction_rows([r["path"] for r in splits["test"]], y_test, p_test, p.threshold)
    # dvcyaml=False: dvc.yaml declares these files by hand (outputs, metrics, plot definitions)
    with Live(LIVE, dvcyaml=False, save_dvc_exp=False) as live:
        for name in splits:
            live.summary[name] = evaluation.binary_metrics(truth[name], probability[name], p.threshold)
            live.log_sklearn_plot("roc", truth[name], probability[name], name=f"roc/{name}")
        live.log_sklearn_plot("precision_recall", y_test, p_test, name="precision_recall/test")
        live.log_sklearn_plot("confusion_matrix", [r["actual"] for r in predictions],
                              [r["predicted"] for r in predictions], name="confusion_matrix/test")
    write_json(f"{LIVE}/per_class.json",
               {name: evaluation.per_class(truth[name], probability[name], p.threshold) for name in splits})
    write_csv(f"{PLOTS}/predictions.csv", predictions, ["path", "actual", "predicted", "probability"])
    plotting.roc({name: (truth[name], probability[name]) for name in splits}, f"{PLOTS}/roc.png")
    plotting.precision_recall(y_test, p_test, f"{PLOTS}/precision_recall.png")
    plotting.confusion_matrix(evaluation.confusion(y_test, p_test, p.threshold), f"{PLOTS}/confusion_matrix.png")
    plotting.mistakes([{**r, "valence": valence.get(r["path"])} for r in predictions], f"{PLOTS}/mistakes.png")
    for name, scores in live.summary.items():
        print(f"{name} ({len(splits[name])} images): " + ", ".join(f"{k} {v}" for k, v in scores.items()))


if __name__ == "__main__":
    run_stage(main)
