"""Stage 5: score the trained model on the test manifest, and on the training manifest for comparison.

    python stages/evaluate.py

Reads models/model.keras, data/split/test.csv and data/split/train.csv; writes metrics/metrics.json (test
metrics at the top level, the same for the training split under "train", so overfitting shows) and, under
plots/eval/, the curve data DVC draws (roc_test.csv, roc_train.csv, precision_recall.csv, predictions.csv for
the confusion matrix) and PNGs, among them mistakes.png: the test split's most confident false positives and
false negatives with their probability and rated valence (from data/labels.csv).
"""
from pathlib import Path

import _path  # noqa: F401
from valence import params
from valence.labels import targets
from valence.errors import run_stage
from valence.files import read_csv, write_csv, write_json
from valence.splitting import MANIFEST_COLUMNS

PLOTS = "plots/eval"


def main():
    p = params.load("evaluate")
    splits = {name: read_csv(f"data/split/{name}.csv", required=MANIFEST_COLUMNS) for name in ("test", "train")}
    labels = Path("data/labels.csv")  # for the rated valence shown beside each mistake, where there is one
    valence = {r["path"]: r.get("valence") for r in read_csv(labels, required=["path"])} if labels.exists() else {}
    from valence import compute, evaluation, models, plotting  # TensorFlow loads only after the inputs are checked

    compute.configure()
    model = models.load("models/model.keras")
    truth = {name: targets(rows) for name, rows in splits.items()}
    probability = {name: models.predict(model, [r["path"] for r in rows], p.batch_size, desc=name,
                                         flip_average=p.flip_average)
                   for name, rows in splits.items()}
    scores, roc = {}, {}
    for name in splits:
        scores[name] = evaluation.binary_metrics(truth[name], probability[name], p.threshold, split=name)
        roc[name] = (evaluation.roc_points(truth[name], probability[name]), scores[name]["roc_auc"])
        write_csv(f"{PLOTS}/roc_{name}.csv", roc[name][0], ["fpr", "tpr", "threshold"])
    write_json("metrics/metrics.json", {**scores["test"], "train": scores["train"]})
    y_test, p_test = truth["test"], probability["test"]
    pr = evaluation.precision_recall_points(y_test, p_test)
    write_csv(f"{PLOTS}/precision_recall.csv", pr, ["recall", "precision", "threshold"])
    predictions = evaluation.prediction_rows([r["path"] for r in splits["test"]], y_test, p_test, p.threshold)
    write_csv(f"{PLOTS}/predictions.csv", predictions, ["path", "actual", "predicted", "probability"])
    plotting.roc(roc, f"{PLOTS}/roc.png")
    plotting.precision_recall(pr, scores["test"]["average_precision"], y_test.mean(), f"{PLOTS}/precision_recall.png")
    plotting.confusion_matrix(evaluation.confusion(y_test, p_test, p.threshold), f"{PLOTS}/confusion_matrix.png")
    plotting.mistakes([{**r, "valence": valence.get(r["path"])} for r in predictions], f"{PLOTS}/mistakes.png")
    for name, s in scores.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in s.items() if not isinstance(v, dict)))


if __name__ == "__main__":
    run_stage(main)
