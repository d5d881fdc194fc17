"""Out-of-fold scores of heads on frozen features, on the split stage's folds: candidates for the recipe.

    dvc repro split                                   # data/split/folds.csv (and data/images)
    python benchmarks/frozen_heads.py                 # every candidate below
    python benchmarks/frozen_heads.py --candidates lite2,lite2_blocks --other-split-seeds 22,23

Each candidate names its feature extractors (valence.learn.features: backbone, input size, pooled blocks; several are
combined into one model that resizes inside, as a released model would) and the views its head trains on.
Features are computed once per candidate and view and cached in data/features-bench/ (not in git); they do not
depend on the split, so --other-split-seeds re-scores the same features on the folds the split stage would
make with other seeds (the headline's noise). For each fold: C is chosen from --cs by grouped 5-fold CV inside the other folds (never the
held-out fold), a standardised logistic regression (valence.learn.heads) is fit on the other folds, and the held-out
fold gets P(Positive) averaged over the photo and its mirror image (views 0 and 1: what flip averaging does).
Prints pooled out-of-fold ROC AUC, balanced accuracy and average precision with the per-fold mean ± std, the
balanced accuracy at a threshold chosen inside the training folds (the one that maximises it on the inner
folds' held-out predictions) instead of 0.5, then
each candidate's per-fold ROC AUC difference from the first one named, mean ± standard error, and writes
benchmarks/results/frozen-<candidate>.csv (or under --results-dir): one row per image (path, label, fold, C,
probability).

Choosing the best of several candidates on the same folds flatters the winner. With two or more candidates it also
prints the **nested** score, the number the choice never saw: each outer fold picks the candidate and C with the
best inner-CV ROC AUC on its own four training folds, and the fold is scored by that pick
(benchmarks/results/frozen-nested.csv: path, label, fold, candidate, C, probability).
"""
import argparse
import functools
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from valence import params, runtime, train_params
from valence.data.audit import near_duplicate_pairs
from valence.data.folds import MANIFEST_COLUMNS, assign_folds, fold_count, merge_groups
from valence.data.images import load_images
from valence.data.labels import targets
from valence.files import atomic_path, read_csv, write_csv
from valence.learn import features, heads
from valence.learn.train_on_features import choose_c
from valence.registry import BACKBONES
from valence.report import evaluation

AUDIT = "data/near_duplicates.csv"
CACHE = Path("data/features-bench")
RESULTS = Path(__file__).resolve().parent / "results"
LITE2_SIDE, MOBILENET_SIDE = BACKBONES["efficientnet_lite2"].native_size, BACKBONES["mobilenet_v2"].native_size
LITE2 = ("efficientnet_lite2", LITE2_SIDE, round(LITE2_SIDE * 1.25))  # 260 × 325: 4:5, as OASIS' photos
LITE2_LARGE = ("efficientnet_lite2", round(LITE2_SIDE * 1.25), round(LITE2_SIDE * 1.25 ** 2))  # 325 × 406
MOBILENET = ("mobilenet_v2", MOBILENET_SIDE, MOBILENET_SIDE)
BLOCKS = (20, 15)  # Lite2's last block and the first of its stride-32 stage (blocks 15–19; ../shared/RESEARCH.md)
# name: ([(backbone, height, width, pooled blocks)], training views)
CANDIDATES = {
    "lite2": ([(*LITE2, ())], 2),
    "lite2_photo_only": ([(*LITE2, ())], 1),
    "lite2_8views": ([(*LITE2, ())], 8),
    "lite2_blocks": ([(*LITE2, BLOCKS)], 2),
    "lite2_large": ([(*LITE2_LARGE, ())], 2),
    "lite2_mobilenet": ([(*LITE2, ()), (*MOBILENET, ())], 2),
    "lite2_blocks_mobilenet": ([(*LITE2, BLOCKS), (*MOBILENET, ())], 2),
}


@functools.lru_cache(maxsize=1)
def extractor(specs):
    """The combined extractor of ``specs``, built once for all its views."""
    return features.combined_extractor(specs)


def view_features(specs, view, rows, augment, seed):
    """(images, features) of one view through the combined extractor of ``specs``, from the cache or computed
    (and cached). Images load at the first extractor's size; the others resize inside, as the release model."""
    key = "+".join(f"{name}-{height}x{width}-blocks{'_'.join(map(str, blocks)) or 'none'}" for name, height, width, blocks in specs)
    path = CACHE / f"{key}-seed{seed}-view{view}.npy"
    if path.is_file():
        return np.load(path)
    _, height, width, _ = specs[0]
    images = load_images([r["path"] for r in rows], height, width, desc=f"{height}×{width}")
    started = time.perf_counter()
    out = features.extract_view(extractor(tuple(specs)), images, view, augment, seed)
    print(f"{path.name}: {time.perf_counter() - started:.0f} s")
    with atomic_path(path, suffix=".npy") as tmp:  # a stopped run leaves no half-written cache file
        np.save(tmp, out)
    return out


def out_of_fold(x, views, y, folds, groups, cs, seed):
    """(P(Positive), chosen C, threshold, {fold: the chosen C's mean inner ROC AUC}) of every image from the head of
    the fold that held it out; the threshold maximises balanced accuracy on the inner folds' held-out predictions
    of the training folds (at that C)."""
    probability, chosen, threshold, inner_auc = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y)), {}
    for k in sorted(set(folds)):
        fit, held = folds != k, folds == k
        c, scores, inner = choose_c(x[:views, fit], y[fit], groups[fit], cs, folds=5, seed=seed)
        head = heads.logistic(x[:views, fit], y[fit], c, "p")
        probability[held], chosen[held] = heads.score([head], x[:2, held])["p"], c
        threshold[held] = evaluation.balanced_threshold(y[fit], inner[c])
        inner_auc[k] = scores[c]
    return probability, chosen, threshold, inner_auc


def nested(scored, folds):
    """The comparison itself cross-validated: each outer fold picks the candidate (and its C) with the best inner-CV
    ROC AUC on its four training folds, never looking at the fold it scores. ``scored``: {candidate: (P(Positive),
    chosen C, {fold: inner ROC AUC})}. Returns (P(Positive) as each fold's pick scored it, {fold: pick})."""
    probability, picked = np.zeros(len(folds)), {}
    for k in sorted(set(folds)):
        picked[k] = max(scored, key=lambda name: scored[name][2][k])  # ties: the candidate named first
        probability[folds == k] = scored[picked[k]][0][folds == k]
    return probability, picked


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--cs", default="0.0003,0.001,0.003", help="C values the inner CV chooses from")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--other-split-seeds", default="", help="e.g. 22,23: folds as the split stage would make "
                        "them with these seeds too (the features do not depend on the split)")
    args = parser.parse_args()
    runtime.configure(0)
    train = train_params.load()
    rows = read_csv("data/split/folds.csv", required=["path", "label", "group", "fold"])
    y = targets(rows).astype(int)
    valence = {r["path"]: r.get("valence") for r in read_csv("data/labels.csv", required=["path"])}
    split = params.load("split")
    seeds = [split.seed] + [int(s) for s in args.other_split_seeds.split(",") if s]
    merged = merge_groups(read_csv("data/labels.csv", required=MANIFEST_COLUMNS), near_duplicate_pairs(AUDIT))
    fold_sets = {}  # split seed → (fold, group) of each row of folds.csv, as the split stage would assign them
    for seed in seeds:
        by_path = {r["path"]: r for r in assign_folds(merged, fold_count(split.test_size), seed,
                                                      grouped=split.group_by == "concept")}
        fold_sets[seed] = (np.array([by_path[r["path"]]["fold"] for r in rows]),
                           np.array([by_path[r["path"]]["group"] or r["path"] for r in rows]))
    if not (fold_sets[split.seed][0] == np.array([int(r["fold"]) for r in rows])).all():
        raise SystemExit("data/split/folds.csv does not hold the folds of params.yaml's split: run dvc repro split")
    cs = [float(c) for c in args.cs.split(",")]
    fold_auc, scored = {}, {}  # scored: split seed → {candidate: (P(Positive), C, {fold: inner ROC AUC})}
    for name in args.candidates.split(","):
        specs, views = CANDIDATES[name]
        x = np.stack([view_features(specs, v, rows, train.augment, train.seed) for v in range(max(views, 2))])
        pooled_auc = []
        for seed, (folds, groups) in fold_sets.items():
            probability, chosen, threshold, inner_auc = out_of_fold(x, views, y, folds, groups, cs, train.seed)
            scored.setdefault(seed, {})[name] = (probability, chosen, inner_auc)
            result = evaluation.out_of_fold(y, probability, folds, 0.5, [valence.get(r["path"]) for r in rows])
            pooled_auc.append(result["roc_auc"])
            cells = [f"{m} {result[m]:.3f} (folds {result['folds'][m]['mean']:.3f} ± {result['folds'][m]['std']:.3f})"
                     for m in ("roc_auc", "balanced_accuracy", "average_precision")]
            print(f"{name}, split seed {seed}: {x.shape[2]} features, {views} training view(s); " + "; ".join(cells)
                  + f"; Spearman ρ with valence {result.get('spearman_valence', float('nan')):.3f}"
                  + "; per-fold ROC AUC " + " / ".join(f"{roc_auc_score(y[folds == k], probability[folds == k]):.3f}"
                                                       for k in sorted(set(folds)))
                  + "; C per fold " + " / ".join(f"{chosen[folds == k][0]:g}" for k in sorted(set(folds)))
                  + f"; balanced accuracy at thresholds chosen inside the training folds "
                  f"{balanced_accuracy_score(y, probability >= threshold):.3f} (thresholds "
                  + " / ".join(f"{threshold[folds == k][0]:.2f}" for k in sorted(set(folds))) + ")")
            if seed != split.seed:
                continue
            fold_auc[name] = np.array([roc_auc_score(y[folds == k], probability[folds == k]) for k in sorted(set(folds))])
            write_csv(args.results_dir / f"frozen-{name}.csv",
                      [{**{k: r[k] for k in ("path", "label", "fold")}, "C": f"{c:g}", "probability": f"{p:.6f}"}
                       for r, c, p in zip(rows, chosen, probability)], ["path", "label", "fold", "C", "probability"])
        if len(seeds) > 1:
            print(f"{name}: pooled out-of-fold ROC AUC over split seeds {', '.join(map(str, seeds))}: "
                  f"{np.mean(pooled_auc):.3f} ± {np.std(pooled_auc):.3f}")
    first = next(iter(fold_auc))
    for name, auc in list(fold_auc.items())[1:]:  # the selection rule: a gain beyond the per-fold differences' SE
        diff = auc - fold_auc[first]
        print(f"{name} − {first}: ROC AUC {diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f} (SE over folds)")
    if len(fold_auc) < 2:
        return
    nested_auc = []
    for seed, (folds, _) in fold_sets.items():
        probability, picked = nested(scored[seed], folds)
        result = evaluation.out_of_fold(y, probability, folds, 0.5, [valence.get(r["path"]) for r in rows])
        nested_auc.append(result["roc_auc"])
        print(f"nested, split seed {seed}: each fold picks among {len(scored[seed])} candidates × {len(cs)} C by inner CV "
              f"on its training folds; ROC AUC {result['roc_auc']:.3f}, balanced accuracy {result['balanced_accuracy']:.3f}, "
              f"AP {result['average_precision']:.3f}; picks " + " / ".join(
                  f"{picked[k]} C {scored[seed][picked[k]][1][folds == k][0]:g}" for k in sorted(picked)))
        if seed == split.seed:
            write_csv(args.results_dir / "frozen-nested.csv",
                      [{**{k: r[k] for k in ("path", "label", "fold")}, "candidate": picked[f],
                        "C": f"{scored[seed][picked[f]][1][i]:g}", "probability": f"{p:.6f}"}
                       for i, (r, f, p) in enumerate(zip(rows, folds, probability))],
                      ["path", "label", "fold", "candidate", "C", "probability"])
    if len(seeds) > 1:
        print(f"nested: pooled out-of-fold ROC AUC over split seeds {', '.join(map(str, seeds))}: "
              f"{np.mean(nested_auc):.3f} ± {np.std(nested_auc):.3f}")


if __name__ == "__main__":
    main()
