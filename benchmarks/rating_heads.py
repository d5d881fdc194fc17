"""Which score should rank the labels: the logistic head's P(Positive), the valence head's predicted rating, or
both? Out of fold on the pipeline's own features, over several split seeds.

    dvc repro features                                 # data/features, data/labels.csv, data/near_duplicates.csv
    python benchmarks/rating_heads.py                  # split seeds 21, 22, 23
    python benchmarks/rating_heads.py --split-seeds 21
    python benchmarks/rating_heads.py --nested         # after benchmarks/frozen_heads.py: its picks per fold

For each split seed the labelled photos get the folds the split stage would make with it (grouped: concepts and
near-copies in one fold). In each fold, on the other four only, the heads are fit as the fold stages fit them
(valence.learn.train_on_features.fit_heads: C and α by grouped inner CV, the combiner on the inner folds' held-out
predictions) and score the held-out one (photo and mirror averaged). Prints and writes (benchmarks/results/
rating_heads.json) the pooled ROC AUC on the labels of the 3 candidates for P(Positive): the classifier's own,
the predicted valence, and both combined by the fitted logistic map (train.frozen.combine_valence) — beside them
the mean of the two ranks, a combination with nothing fit — per seed and mean ± std over the seeds.

The feature set itself won a comparison on these folds (benchmarks/frozen_heads.py). --nested scores each fold
of data/split/folds.csv (params.yaml's split seed) with the features that fold picked by inner CV in that
comparison (benchmarks/results/frozen-nested.csv; frozen_heads.py's cache, or computed): the number neither
choice of features saw.
"""
import argparse
import contextlib
import dataclasses
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from valence import params, train_params
from valence.data.audit import near_duplicate_pairs
from valence.data.folds import assign_folds, fold_count, merge_groups
from valence.data.labels import targets
from valence.files import read_csv
from valence.learn import features, train_on_features

RESULTS = Path("benchmarks/results/rating_heads.json")


def ranks(scores):
    return np.argsort(np.argsort(scores))


def out_of_fold(rows, p, store="data/features"):
    """{column: a value per row} as the fold stages write them (probability, classifier_probability,
    predicted_valence, …), each row scored by the heads fit on the other folds; ``store`` a feature store, or
    {fold: the store that fold's heads use}."""
    folds = np.array([int(r["fold"]) for r in rows])
    scored = {}
    for k in np.unique(folds):
        used = store[k] if isinstance(store, dict) else store
        fitted, _ = train_on_features.fit_heads(p, [r for r, f in zip(rows, folds) if f != k], used)
        for column, values in train_on_features.score_rows(fitted, [r for r, f in zip(rows, folds) if f == k], used).items():
            scored.setdefault(column, np.zeros(len(rows)))[folds == k] = values
    return scored


def nested_stores(rows, p, folder):
    """{fold: a feature store in ``folder`` of the candidate frozen_heads.py's nested comparison picked for it}."""
    import frozen_heads  # beside this file

    picks = {int(r["fold"]): r["candidate"] for r in read_csv(frozen_heads.RESULTS / "frozen-nested.csv")}
    stores = {}
    for name in sorted(set(picks.values())):
        specs, views = frozen_heads.CANDIDATES[name]
        x = np.stack([frozen_heads.view_features(specs, v, rows, p.augment, p.seed) for v in range(max(views, 2))])
        features.save(folder / name, [r["path"] for r in rows], x.astype(np.float32))
        stores.update({k: folder / name for k, picked in picks.items() if picked == name})
    print("nested: fold " + ", ".join(f"{k} {picks[k]}" for k in sorted(picks)))
    return stores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seeds", default="21,22,23", help="comma-separated split seeds")
    parser.add_argument("--nested", action="store_true", help="data/split/folds.csv, each fold with the features it "
                        "picked in benchmarks/frozen_heads.py's nested comparison")
    args = parser.parse_args()
    p, split = train_params.load(), params.load("split")
    p = dataclasses.replace(p, frozen=dataclasses.replace(p.frozen, combine_valence=True))
    if args.nested:
        rows = read_csv("data/split/folds.csv")
        with tempfile.TemporaryDirectory() as folder:
            stores = nested_stores(rows, p, Path(folder))
            with contextlib.redirect_stdout(io.StringIO()):
                scored = out_of_fold(rows, p, stores)
        y = targets(rows).astype(int)
        print(f"nested, split seed {params.load('split').seed}: " + ", ".join(
            f"{name} {roc_auc_score(y, scored[column]):.4f}" for name, column in
            (("p_positive", "classifier_probability"), ("valence_head", "predicted_valence"), ("combined", "probability"))))
        return
    labels = merge_groups(read_csv("data/labels.csv"), near_duplicate_pairs("data/near_duplicates.csv"))
    result = {"seeds": {}}
    for seed in map(int, args.split_seeds.split(",")):
        rows = assign_folds([dict(r) for r in labels], fold_count(split.test_size), seed, what="data/labels.csv")
        y = targets(rows).astype(int)
        with contextlib.redirect_stdout(io.StringIO()):  # the heads' choices, five folds a seed
            scored = out_of_fold(rows, p)
        classifier, predicted = scored["classifier_probability"], scored["predicted_valence"]
        scores = {"p_positive": roc_auc_score(y, classifier), "valence_head": roc_auc_score(y, predicted),
                  "combined": roc_auc_score(y, scored["probability"]),
                  "both_mean_rank": roc_auc_score(y, ranks(classifier) + ranks(predicted))}
        result["seeds"][str(seed)] = {k: round(float(v), 4) for k, v in scores.items()}
        print(f"split seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
    for key in ("p_positive", "valence_head", "combined", "both_mean_rank"):
        values = [s[key] for s in result["seeds"].values()]
        result[key] = {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}
        print(f"{key}: ROC AUC {np.mean(values):.4f} ± {np.std(values):.4f} over {len(values)} split seed(s)")
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
