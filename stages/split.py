"""Stage 4: stratified folds that keep each concept and its near-copies in one fold.

    python -m stages.split

Reads data/labels.csv (its group column: the OASIS concept) and data/near_duplicates.csv (the audit's
near-duplicate clusters, each joined into one group). Every labelled image gets a fold, 0 … k − 1 with k = round(1 / split.test_size) (0.2 → 5),
stratified by label and seeded by split.seed. With split.group_by concept, whole groups go to one fold
(StratifiedGroupKFold); with none, images are assigned one by one. Writes data/split/folds.csv (path, label,
group, fold, and the valence and arousal ratings, empty where there are none), and data/split/test.csv (fold 0) and data/split/train.csv (the other folds) for the train and
evaluate stages (path, label, group). All sorted by path, so the same params give byte-identical files.
metrics/split.json: images per class and groups per split and per fold, each fold's share of the images and
the largest group, and — checked on what is written — groups_in_several_folds,
near_duplicate_pairs_across_folds, groups_in_both_splits and near_duplicate_pairs_across_splits. Grouped folds
may not hold a group larger than 1 / k + split.tolerance of the images (no split could then be even): such a
group stops the stage, named; folds uneven for smaller groups are reported (printed and in fold_shares).
"""
from valence import config, params
from valence.data.audit import near_duplicate_pairs
from valence.data.labels import RATINGS, class_counts
from valence.errors import PipelineError, run_stage
from valence.files import read_csv, write_csv, write_json
from valence.data.folds import (FOLD_COLUMNS, MANIFEST_COLUMNS, OUTPUT_COLUMNS, assign_folds, check_fold_shares,
                                fold_count, fold_shares, groups_in_several_folds, merge_groups, pairs_across,
                                shared_groups)

AUDIT = config.NEAR_DUPLICATES


def counts(part):
    return {**class_counts(part), "total": len(part), "groups": len({r["group"] for r in part})}


def main():
    p = params.load("split")
    rows = read_csv(config.LABELS, required=MANIFEST_COLUMNS)
    pairs = near_duplicate_pairs(AUDIT)
    rows = merge_groups(rows, pairs)
    grouped = p.group_by == "concept"
    n_folds = fold_count(p.test_size)
    rows = assign_folds(rows, n_folds, p.seed, what=str(config.LABELS), grouped=grouped)
    train, test = [r for r in rows if r["fold"] != 0], [r for r in rows if r["fold"] == 0]
    fold_of = {r["path"]: r["fold"] for r in rows}
    spanning = groups_in_several_folds(rows)
    pairs_apart = [(a, b) for a, b in pairs if a in fold_of and b in fold_of and fold_of[a] != fold_of[b]]
    crossing_groups, crossing_pairs = shared_groups(train, test), pairs_across(train, test, pairs)
    if grouped and (spanning or pairs_apart):  # checked, not assumed
        raise PipelineError(f"grouped folds failed: groups {spanning[:5]} / near-copies {pairs_apart[:5]} in two folds")
    largest = check_fold_shares(rows, n_folds, p.tolerance) if grouped else None
    shares = fold_shares(rows, n_folds)
    if max(abs(s - 1 / n_folds) for s in shares.values()) > p.tolerance:  # small groups of small data: said, not fatal
        print(f"note: folds hold {min(shares.values()):.1%}–{max(shares.values()):.1%} of the images, not "
              f"{1 / n_folds:.0%} ± {p.tolerance:.0%}: whole groups of few images cannot be spread more evenly")
    keep = (lambda r: r) if grouped else (lambda r: {**r, "group": ""})  # none: validation splits image by image too
    write_csv(config.FOLDS, [keep(r) for r in rows], FOLD_COLUMNS + list(RATINGS))
    write_csv(config.TRAIN_SPLIT, [keep(r) for r in train], OUTPUT_COLUMNS)
    write_csv(config.TEST_SPLIT, [keep(r) for r in test], OUTPUT_COLUMNS)
    summary = {"train": counts(train), "test": counts(test),
               "folds": {str(k): counts([r for r in rows if r["fold"] == k]) for k in range(n_folds)}}
    summary.update(fold_shares=shares, largest_group=largest)
    summary.update(group_by=p.group_by, groups_in_several_folds=len(spanning),
                   near_duplicate_pairs_across_folds=len(pairs_apart),
                   groups_in_both_splits=len(crossing_groups),
                   test_images_with_group_in_train=sum(r["group"] in set(crossing_groups) for r in test),
                   near_duplicate_pairs_across_splits=len(crossing_pairs))
    write_json(config.SPLIT_METRICS, summary)
    print(summary)


if __name__ == "__main__":
    run_stage(main)
