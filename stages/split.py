"""Stage 4: stratified train/test manifests that keep each concept and its near-copies on one side.

    python stages/split.py

Reads data/labels.csv (its group column: the OASIS concept) and data/audit.json (near-duplicate pairs, joined
into one group). With split.group_by concept, whole groups go to train or test (StratifiedGroupKFold's first
of round(1 / test_size) folds, seeded by split.seed); with none, images are split one by one, as before.
Writes data/split/train.csv and data/split/test.csv (path, label, group; sorted by path, so the same params
give byte-identical files) and metrics/split.json: images per class and groups per split, and — checked on
the written manifests — groups_in_both_splits and near_duplicate_pairs_across_splits.
"""
import _path  # noqa: F401
from valence import params
from valence.audit import near_duplicate_pairs
from valence.labels import class_counts
from valence.errors import PipelineError, run_stage
from valence.files import read_csv, write_csv, write_json
from valence.splitting import (MANIFEST_COLUMNS, OUTPUT_COLUMNS, merge_groups, pairs_across, shared_groups,
                               stratified_split)

AUDIT = "data/audit.json"


def main():
    p = params.load("split")
    rows = read_csv("data/labels.csv", required=MANIFEST_COLUMNS)
    pairs = near_duplicate_pairs(AUDIT)
    rows = merge_groups(rows, pairs)
    grouped = p.group_by == "concept"
    train, test = stratified_split(rows, p.test_size, p.seed, what="data/labels.csv", grouped=grouped)
    crossing_groups, crossing_pairs = shared_groups(train, test), pairs_across(train, test, pairs)
    if grouped and (crossing_groups or crossing_pairs):  # checked, not assumed
        raise PipelineError(f"grouped split failed: groups {crossing_groups[:5]} / pairs {crossing_pairs[:5]} "
                            "on both sides")
    keep = (lambda r: r) if grouped else (lambda r: {**r, "group": ""})  # none: validation splits image by image too
    write_csv("data/split/train.csv", [keep(r) for r in train], OUTPUT_COLUMNS)
    write_csv("data/split/test.csv", [keep(r) for r in test], OUTPUT_COLUMNS)
    summary = {name: {**class_counts(part), "total": len(part), "groups": len({r["group"] for r in part})}
               for name, part in (("train", train), ("test", test))}
    summary.update(group_by=p.group_by, groups_in_both_splits=len(crossing_groups),
                   test_images_with_group_in_train=sum(r["group"] in set(crossing_groups) for r in test),
                   near_duplicate_pairs_across_splits=len(crossing_pairs))
    write_json("metrics/split.json", summary)
    print(summary)


if __name__ == "__main__":
    run_stage(main)
