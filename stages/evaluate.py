"""Stage 5: score the trained model on the test manifest.

    python stages/evaluate.py

Reads models/model.keras and data/split/test.csv; writes metrics/metrics.json and, under plots/eval/, the
curve data DVC draws (roc.csv, precision_recall.csv, predictions.csv for the confusion matrix) and PNGs.
"""
import _path  # noqa: F401
from valence import params
from valence.datasets import targets
from valence.errors import run_stage
from valence.files import read_csv, write_csv, write_json
from valence.splitting import MANIFEST_COLUMNS

PLOTS = "plots/eval"


def main():
    p = params.load("evaluate")
    rows = read_csv("data/split/test.csv", required=MANIFEST_COLUMNS)
    from valence import evaluation, models, plotting  # TensorFlow loads only after the inputs are checked

    model = models.load("models/model.keras")
    probability = models.predict(model, [r["path"] for r in rows], p.batch_size)
    y_true = targets(rows)
    scores = evaluation.binary_metrics(y_true, probability, p.threshold)
    write_json("metrics/metrics.json", scores)
    roc = evaluation.roc_points(y_true, probability)
    pr = evaluation.precision_recall_points(y_true, probability)
    write_csv(f"{PLOTS}/roc.csv", roc, ["fpr", "tpr", "threshold"])
    write_csv(f"{PLOTS}/precision_recall.csv", pr, ["recall", "precision", "threshold"])
    predictions = evaluation.prediction_rows([r["path"] for r in rows], y_true, probability, p.threshold)
    write_csv(f"{PLOTS}/predictions.csv", predictions, ["path", "actual", "predicted", "probability"])
    plotting.roc(roc, scores["roc_auc"], f"{PLOTS}/roc.png")
    plotting.precision_recall(pr, scores["average_precision"], y_true.mean(), f"{PLOTS}/precision_recall.png")
    plotting.confusion_matrix(evaluation.confusion(y_true, probability, p.threshold), f"{PLOTS}/confusion_matrix.png")
    print({k: v for k, v in scores.items() if not isinstance(v, dict)})


if __name__ == "__main__":
    run_stage(main)
