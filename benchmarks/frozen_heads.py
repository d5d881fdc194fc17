"""Out-of-fold scores of heads on frozen features, on the split stage's folds: candidates for the recipe.

    dvc repro split                                   # data/split/folds.csv (and data/images)
    python benchmarks/frozen_heads.py                 # every candidate below
    python benchmarks/frozen_heads.py --candidates lite2,lite2_blocks

Each candidate names its feature extractors (valence.features: backbone, input size, pooled blocks) and the views
its head trains on. Features are computed once per extractor and view and cached in data/features-bench/
(not in git). For each fold: C is chosen from --cs by grouped 5-fold CV inside the other folds (never the
held-out fold), a standardised logistic regression (valence.heads) is fit on the other folds, and the held-out
fold gets P(Positive) averaged over the photo and its mirror image (views 0 and 1: what flip averaging does).
Prints pooled out-of-fold ROC AUC, balanced accuracy and average precision with the per-fold mean ± std, then
each candidate's per-fold ROC AUC difference from the first one named, mean ± standard error, and writes
benchmarks/results/frozen-<candidate>.csv: one row per image (path, label, fold, C, probability).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from valence import compute, features, heads, params  # noqa: E402
from valence.files import read_csv, write_csv  # noqa: E402
from valence.images import load_images  # noqa: E402
from valence.labels import targets  # noqa: E402

CACHE = Path("data/features-bench")
RESULTS = Path(__file__).resolve().parent / "results"
LITE2, LITE2_LARGE, MOBILENET = ("efficientnet_lite2", 260, 325), ("efficientnet_lite2", 325, 406), ("mobilenet_v2", 224, 224)
BLOCKS = (20, 15)  # Lite2's last block and the last of the stage before (../shared/RESEARCH.md)
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


def view_features(spec, view, rows, augment, seed):
    """(images, features) of one extractor ``spec`` and one view, from the cache or computed (and cached)."""
    name, height, width, blocks = spec
    path = CACHE / f"{name}-{height}x{width}-blocks{'_'.join(map(str, blocks)) or 'none'}-seed{seed}-view{view}.npy"
    if path.is_file():
        return np.load(path)
    images = load_images([r["path"] for r in rows], height, width, desc=f"{name} {height}×{width}")
    started = time.perf_counter()
    out = features.extract_view(features.extractor(name, height, width, blocks), images, view, augment, seed)
    print(f"{path.name}: {time.perf_counter() - started:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def scores(y, probability):
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

    return {"roc_auc": roc_auc_score(y, probability), "balanced_accuracy": balanced_accuracy_score(y, probability >= 0.5),
            "average_precision": average_precision_score(y, probability)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--cs", default="0.0003,0.001,0.003", help="C values the inner CV chooses from")
    args = parser.parse_args()
    compute.configure(0)
    train = params.load("train")
    rows = read_csv("data/split/folds.csv", required=["path", "label", "group", "fold"])
    y, folds = targets(rows).astype(int), np.array([int(r["fold"]) for r in rows])
    groups = np.array([r["group"] or r["path"] for r in rows])
    cs = [float(c) for c in args.cs.split(",")]
    fold_auc = {}
    for name in args.candidates.split(","):
        specs, views = CANDIDATES[name]
        x = np.stack([np.concatenate([view_features(spec, v, rows, train.augment, train.seed) for spec in specs], axis=1)
                      for v in range(max(views, 2))])  # views 0 and 1 score every held-out image
        probability, chosen, per_fold = np.zeros(len(rows)), np.zeros(len(rows)), []
        for k in sorted(set(folds)):
            fit, held = folds != k, folds == k
            c, _ = heads.choose_c(x[:views, fit], y[fit], groups[fit], cs, folds=5, seed=train.seed)
            head = heads.fit(x[:views, fit], y[fit], c)
            probability[held], chosen[held] = heads.probability(head, x[:2, held]), c
            per_fold.append(scores(y[held], probability[held]))
        pooled = scores(y, probability)
        fold_auc[name] = np.array([f["roc_auc"] for f in per_fold])
        cells = [f"{m} {pooled[m]:.3f} (folds {np.mean([f[m] for f in per_fold]):.3f} ± "
                 f"{np.std([f[m] for f in per_fold]):.3f})" for m in pooled]
        print(f"{name}: {x.shape[2]} features, {views} training view(s); " + "; ".join(cells)
              + "; per-fold ROC AUC " + " / ".join(f"{f['roc_auc']:.3f}" for f in per_fold)
              + "; C per fold " + " / ".join(f"{c:g}" for c in [chosen[folds == k][0] for k in sorted(set(folds))]))
        write_csv(RESULTS / f"frozen-{name}.csv",
                  [{**{k: r[k] for k in ("path", "label", "fold")}, "C": f"{c:g}", "probability": f"{p:.6f}"}
                   for r, c, p in zip(rows, chosen, probability)], ["path", "label", "fold", "C", "probability"])
    first = next(iter(fold_auc))
    for name, auc in list(fold_auc.items())[1:]:  # the selection rule: a gain beyond the per-fold differences' SE
        diff = auc - fold_auc[first]
        print(f"{name} − {first}: ROC AUC {diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f} (SE over folds)")


if __name__ == "__main__":
    main()
