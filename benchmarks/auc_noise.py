"""How many photos before the ROC AUC means something: the spread of the ROC AUC measured on n photos per class.

    python benchmarks/auc_noise.py                       # after `dvc repro`: plots/eval/predictions.csv
    python benchmarks/auc_noise.py --per-class 5 10 25 50 100 200 --draws 2000

Draws n photos of each class, without replacement, from the committed run's out-of-fold predictions and
scores them: the same model and the same photos' scores, so the spread is the measurement's own noise at
that size (a smaller set of your own photos also trains a weaker model; this does not count that). Prints a
Markdown table: mean, std and the 5–95 % range of the ROC AUC over the draws.
"""
import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from valence.files import read_csv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", default="plots/eval/predictions.csv")
    parser.add_argument("--per-class", type=int, nargs="+", default=[5, 10, 25, 50, 100, 200])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = read_csv(args.predictions, required=["actual", "probability"])
    y = np.array([r["actual"] == "Positive" for r in rows])
    probability = np.array([float(r["probability"]) for r in rows])
    positive, negative = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(args.seed)
    print(f"{args.predictions}: {len(positive)} Positive, {len(negative)} Negative, "
          f"ROC AUC {roc_auc_score(y, probability):.3f}; {args.draws} draws per size\n")
    print("| photos per class | mean ROC AUC | std | 5–95 % |\n|---|---|---|---|")
    for n in args.per_class:
        if n > min(len(positive), len(negative)):
            continue
        aucs = [roc_auc_score(y[i], probability[i]) for i in (
            np.concatenate([rng.choice(positive, n, replace=False), rng.choice(negative, n, replace=False)])
            for _ in range(args.draws))]
        low, high = np.percentile(aucs, [5, 95])
        print(f"| {n} | {np.mean(aucs):.3f} | {np.std(aucs):.3f} | {low:.2f}–{high:.2f} |")


if __name__ == "__main__":
    main()
