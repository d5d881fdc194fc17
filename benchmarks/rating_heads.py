"""Which score should rank the labels: the logistic head's P(Positive), the valence head's predicted rating, or
both? Out of fold on the pipeline's own features, over several split seeds.

    dvc repro features                                 # data/features, data/labels.csv, data/near_duplicates.csv
    python benchmarks/rating_heads.py                  # split seeds 21, 22, 23
    python benchmarks/rating_heads.py --split-seeds 21

For each split seed the labelled photos get the folds the split stage would make with it (grouped: concepts and
near-copies in one fold). In each fold, on the other four only: the logistic head's C is chosen among
train.frozen.regularization and the valence ridge head's α among train.frozen.rating_alphas, each by grouped
inner CV (valence.learn.logistic_head, valence.learn.rating_heads, as the fold stages do); both are fit on the four
folds and score the held-out one (photo and mirror averaged). Prints and writes (benchmarks/results/
rating_heads.json) the pooled ROC AUC on the labels of: P(Positive), the predicted valence, and both combined
(the mean of their ranks), per seed and mean ± std over the seeds.
"""
import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from valence import params
from valence.data.audit import near_duplicate_pairs
from valence.data.folds import assign_folds, fold_count, merge_groups
from valence.data.labels import ratings, targets
from valence.files import read_csv
from valence.learn import features, logistic_head, rating_heads

RESULTS = Path("benchmarks/results/rating_heads.json")


def ranks(scores):
    return np.argsort(np.argsort(scores))


def out_of_fold(rows, view_features, p):
    """(P(Positive), predicted valence) of every row, each from the heads fit on the other folds."""
    h = p.frozen
    y, valence = targets(rows).astype(int), ratings(rows, "valence")
    groups, folds = np.array([r["group"] for r in rows]), np.array([r["fold"] for r in rows])
    probability, predicted = np.zeros(len(rows)), np.zeros(len(rows))
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        x = view_features[:, train]
        c, _, _ = logistic_head.choose_c(x, y[train], groups[train], h.regularization, h.inner_folds, p.seed)
        probability[test] = logistic_head.probability(logistic_head.fit(x, y[train], c), view_features[:, test])
        alpha, _, _ = rating_heads.choose_alpha(x, valence[train], groups[train], h.rating_alphas, h.inner_folds, p.seed)
        predicted[test] = rating_heads.predict(rating_heads.fit(x, valence[train], alpha), view_features[:, test])
    return probability, predicted


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seeds", default="21,22,23", help="comma-separated split seeds")
    args = parser.parse_args()
    p, split = params.load("train"), params.load("split")
    labels = merge_groups(read_csv("data/labels.csv"), near_duplicate_pairs("data/near_duplicates.csv"))
    stored = np.asarray(features.load("data/features", [r["path"] for r in labels])[:2])
    position = {r["path"]: i for i, r in enumerate(labels)}
    result = {"seeds": {}}
    for seed in map(int, args.split_seeds.split(",")):
        rows = assign_folds([dict(r) for r in labels], fold_count(split.test_size), seed, what="data/labels.csv")
        y = targets(rows).astype(int)
        probability, predicted = out_of_fold(rows, stored[:, [position[r["path"]] for r in rows]], p)
        scores = {"p_positive": roc_auc_score(y, probability), "valence_head": roc_auc_score(y, predicted),
                  "both_mean_rank": roc_auc_score(y, ranks(probability) + ranks(predicted))}
        result["seeds"][str(seed)] = {k: round(float(v), 4) for k, v in scores.items()}
        print(f"split seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
    for key in ("p_positive", "valence_head", "both_mean_rank"):
        values = [s[key] for s in result["seeds"].values()]
        result[key] = {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}
        print(f"{key}: ROC AUC {np.mean(values):.4f} ± {np.std(values):.4f} over {len(values)} split seed(s)")
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
