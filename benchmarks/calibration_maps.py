"""Which calibration map makes P(Positive) mean what it says: four candidates, each cross-fitted on the fold models'
out-of-fold predictions, on the folds of three split seeds.

    dvc repro features                            # data/features and data/split/folds.csv
    python benchmarks/calibration_maps.py         # split seeds 21 (the pipeline's), 22, 23: about 2 minutes

For each split seed the five folds' frozen heads are fit as the fold stages fit them (train_on_features.fit_heads:
C and α by grouped inner CV, the combiner on the inner folds' held-out predictions), the held-out fold scored
photo and mirror (the fold models' own P(Positive), "none" below). Each map is then cross-fitted: every fold's
predictions mapped by the map fit on the other four folds' (what the release's map, fit on all five, does to
photos it never saw):
- platt: sigmoid(s · logit p + c) (the map before issue 48);
- beta: sigmoid(a · ln p − b · ln(1 − p) + c), a, b ≥ 0 (valence.learn.calibration, the default since);
- isotonic: scikit-learn's IsotonicRegression, clipped to [0.01, 0.99] (steps: ties cost ranking);
- restack: the combiner refit on the other folds' out-of-fold classifier logits and predicted valence (the
  combination and the calibration fit together on the outer folds; it changes the ranking).
Prints, per seed and map, the pooled ROC AUC of the mapped probabilities, ECE (10 bins) against its chance
distribution (median, p95 and p-value of calibration.null_ece), log loss, Brier and the reliability by fifths of
the photos (mean predicted → observed), and writes benchmarks/results/calibration_maps.json.
"""
import argparse
import json
import time

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score

from valence import config, params, train_params
from valence.config import CLASSIFIER_PROBABILITY, PROBABILITY, predicted_column
from valence.data.folds import FOLD_COLUMNS, assign_folds, fold_sides
from valence.data.labels import targets
from valence.files import atomic_path, read_csv
from valence.learn import calibration, heads, train_on_features


def out_of_fold(p, rows, rating_scale, flip_average):
    """(labels, folds, {column: values}) of the fold models on ``rows``' folds, in fold order."""
    y, folds, columns = [], [], {}
    for fold in sorted({int(r["fold"]) for r in rows}):
        trained_on, held_out = fold_sides(rows, fold)
        fitted, _ = train_on_features.fit_heads(p, trained_on, rating_scale=rating_scale)
        for name, values in train_on_features.score_rows(fitted, held_out, flip_average=flip_average).items():
            columns.setdefault(name, []).extend(values)
        y += list(targets(held_out)); folds += [fold] * len(held_out)
    return np.array(y), np.array(folds), {k: np.array(v) for k, v in columns.items()}


def cross_fitted(fit_and_map, folds):
    mapped = np.zeros(len(folds))
    for fold in np.unique(folds):
        mapped[folds == fold] = fit_and_map(folds != fold, folds == fold)
    return mapped


def maps(y, folds, columns):
    """{map name: cross-fitted probabilities}."""
    raw, valence = columns[PROBABILITY], columns.get(predicted_column("valence"))
    candidates = {"none": raw,
                  "platt": cross_fitted(lambda fit, on: calibration.apply(_platt(y[fit], raw[fit]), raw[on]), folds),
                  "beta": calibration.cross_fitted(y, raw, folds)[0],
                  "isotonic": cross_fitted(lambda fit, on: IsotonicRegression(
                      out_of_bounds="clip", y_min=0.01, y_max=0.99).fit(raw[fit], y[fit]).predict(raw[on]), folds)}
    if valence is not None:
        z = heads.logit(columns[CLASSIFIER_PROBABILITY])

        def restack(fit, on):
            (a, b), c = heads.stack(y[fit], [z[fit], valence[fit]])
            return 1 / (1 + np.exp(-(a * z[on] + b * valence[on] + c)))
        candidates["restack"] = cross_fitted(restack, folds)
    return candidates


def _platt(y, probability):
    """Platt's map as a beta map with a = b."""
    (slope,), intercept = heads.stack(y, [heads.logit(probability)])
    return slope, slope, intercept


def fifths(y, probability):
    order = np.argsort(probability, kind="stable")
    return [[round(float(probability[i].mean()), 3), round(float(y[i].mean()), 3)]
            for i in np.array_split(order, 5)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23], help="split seeds")
    parser.add_argument("--out", default="benchmarks/results/calibration_maps.json")
    args = parser.parse_args()
    p, evaluate = train_params.load(), params.load("evaluate")
    rating_scale, n_folds = params.load("unzip").rating_scale, len({r["fold"] for r in read_csv(config.FOLDS)})
    labelled = read_csv(config.FOLDS, required=FOLD_COLUMNS)
    results = {}
    for seed in args.seeds:
        start = time.time()
        rows = assign_folds(labelled, n_folds, seed)  # folds.csv's groups (concepts and near-copies merged)
        y, folds, columns = out_of_fold(p, rows, rating_scale, evaluate.flip_average)
        results[seed] = {}
        for name, probability in maps(y, folds, columns).items():
            scores = {"roc_auc": round(roc_auc_score(y, probability), 4),
                      **calibration.null_ece(y, probability, p.seed),
                      "log_loss": round(log_loss(y, probability), 4),
                      "brier": round(float(np.mean((probability - y) ** 2)), 4), "fifths": fifths(y, probability)}
            results[seed][name] = scores
            print(f"split seed {seed} {name:9s} ROC AUC {scores['roc_auc']:.4f}  ECE {scores['ece']:.4f} (chance "
                  f"median {scores['null_median']:.3f}, p95 {scores['null_p95']:.3f}, p {scores['p_value']:.3f})  "
                  f"log loss {scores['log_loss']:.4f}  Brier {scores['brier']:.4f}  fifths "
                  + " ".join(f"{a:.2f}→{b:.2f}" for a, b in scores["fifths"]), flush=True)
        print(f"split seed {seed}: {time.time() - start:.0f} s")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
