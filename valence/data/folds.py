"""Stratified, seeded train/test splits of the labels table into manifests (path, label, group).

Photos of one group — one OASIS concept ("Dog 1" … "Dog 20"), or images the audit found to be near-copies —
always land on the same side of a split. Otherwise the test split would measure whether the model recognises
a concept it has already seen, not whether it can judge a new photo.
"""
from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from valence.config import FOLDS, LABELS
from valence.errors import PipelineError

MANIFEST_COLUMNS = ["path", "label"]  # required; "group" is written too and used where present
OUTPUT_COLUMNS = ["path", "label", "group"]
FOLD_COLUMNS = ["path", "label", "group", "fold"]  # required; folds.csv also carries labels.csv's ratings (RATINGS)


def _check_classes(rows, what):
    counts = Counter(r["label"] for r in rows)
    if len(counts) < 2:
        raise PipelineError(f"{what}: only one class ({', '.join(counts) or 'none'}) — need Negative and Positive")
    rare = {c: n for c, n in counts.items() if n < 2}
    if rare:
        raise PipelineError(f"{what}: too few images to stratify: {rare} (each class needs at least 2)")


def merge_groups(rows, pairs):
    """Rows with their "group" joined over ``pairs`` of paths (near-copies): connected groups become one.

    A merged group is named after its alphabetically first member group, so names are stable.
    """
    parent = {}

    def find(g):
        parent.setdefault(g, g)
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    group_of = {r["path"]: r.get("group") or r["path"] for r in rows}
    for a, b in pairs:
        if a in group_of and b in group_of:
            first, second = sorted((find(group_of[a]), find(group_of[b])))
            parent[second] = first
    return [{**r, "group": find(group_of[r["path"]])} for r in rows]


def check_fillable(labels, groups, n_splits, what, remedy="use more images or fewer folds"):
    """A one-line error unless ``n_splits`` stratified group folds can be made: at least ``n_splits`` groups,
    and a class with at least ``n_splits`` images (StratifiedGroupKFold's own ValueError otherwise). A rarer
    class leaves some folds without it: callers that need both classes in every fold check that."""
    if len(set(groups)) < n_splits:
        raise PipelineError(f"{what}: {len(set(groups))} groups cannot fill {n_splits} folds; {remedy}")
    counts = Counter(labels)
    if all(n < n_splits for n in counts.values()):
        raise PipelineError(f"{what}: {' and '.join(f'{n} {c}' for c, n in sorted(counts.items()))} images cannot "
                            f"fill {n_splits} stratified folds (a class needs at least {n_splits}); {remedy}")


def grouped_folds(rows, n_splits, seed, what="labels"):
    """[(train rows, test rows)] × n_splits: stratified by label, no group on both sides, sorted by path."""
    _check_classes(rows, what)
    groups = [r.get("group") or r["path"] for r in rows]
    labels = [r["label"] for r in rows]
    check_fillable(labels, groups, n_splits, what, "use more images or a larger split.test_size (fewer folds)")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    by_path = lambda r: r["path"]  # noqa: E731
    result = []
    for train_index, test_index in folds.split(np.zeros(len(rows)), labels, groups):
        train, test = [rows[i] for i in train_index], [rows[i] for i in test_index]
        check_no_shared_groups(train, test, what)
        result.append((sorted(train, key=by_path), sorted(test, key=by_path)))
    return result


def fold_count(test_size):
    """k folds for a test share: round(1 / test_size), at least 2 (0.2 → 5)."""
    return max(2, round(1 / test_size))


def assign_folds(rows, n_folds, seed, what="labels", grouped=True):
    """Rows with a "fold" (0 … n_folds − 1), sorted by path: stratified by label and seeded; grouped, every
    group in one fold (StratifiedGroupKFold, as ``grouped_folds``), else image by image (StratifiedKFold).

    Grouped, fold 0 is exactly the test split ``stratified_split`` gives for test_size 1 / n_folds. Every fold
    must hold both classes: a fold scored alone needs them for ROC AUC.
    """
    if grouped:
        held_out = [test for _, test in grouped_folds(rows, n_folds, seed, what)]
    else:
        _check_classes(rows, what)
        try:
            folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            held_out = [[rows[i] for i in test] for _, test in folds.split(np.zeros(len(rows)), [r["label"] for r in rows])]
        except ValueError as err:
            raise PipelineError(f"{what}: cannot make {n_folds} folds: {err}") from None
    classes = {r["label"] for r in rows}
    for fold, part in enumerate(held_out):
        if {r["label"] for r in part} != classes:
            raise PipelineError(f"{what}: fold {fold} of {n_folds} holds only {', '.join(sorted({r['label'] for r in part}))}; "
                                "use more images or a larger split.test_size (fewer folds)")
    return sorted(({**r, "fold": fold} for fold, part in enumerate(held_out) for r in part), key=lambda r: r["path"])


def fold_shares(rows, n_folds):
    """{fold: its share of the images} of rows with a "fold"."""
    return {str(k): round(sum(r["fold"] == k for r in rows) / len(rows), 4) for k in range(n_folds)}


def check_fold_shares(rows, n_folds, tolerance, what=str(LABELS)):
    """The largest group {"group", "images", "share"}; a one-line error when it holds more than a fold may
    (1 / n_folds + ``tolerance`` of the images): no assignment can then make even folds. Uneven folds of
    smaller groups (small data) are the caller's to report."""
    sizes = Counter(r["group"] for r in rows)
    group, size = max(sizes.items(), key=lambda item: (item[1], item[0]))
    largest = {"group": group, "images": size, "share": round(size / len(rows), 4)}
    if size / len(rows) > 1 / n_folds + tolerance:
        shares = fold_shares(rows, n_folds).values()
        raise PipelineError(f"{what}: the largest group, {group!r}, holds {size} images ({size / len(rows):.1%} of "
                            f"all), so {n_folds} folds of {1 / n_folds:.0%} ± {tolerance:.0%} are impossible "
                            f"(folds hold {min(shares):.1%}–{max(shares):.1%}); give it fewer photos, lower "
                            "audit.near_duplicate_bits or raise split.tolerance")
    return largest


def groups_in_several_folds(rows):
    """Groups whose images sit in more than one fold, sorted."""
    folds = {}
    for r in rows:
        if r.get("group"):
            folds.setdefault(r["group"], set()).add(r["fold"])
    return sorted(g for g, seen in folds.items() if len(seen) > 1)


def fold_sides(rows, fold, what=str(FOLDS)):
    """(trained_on, held_out): the rows of every fold but ``fold``, and those of ``fold``; a group on both
    sides is an error (checked, not assumed), so the held-out images' model saw no image of their group."""
    try:
        folds = [int(r["fold"]) for r in rows]
    except (KeyError, ValueError):
        raise PipelineError(f"{what}: every row needs an integer fold") from None
    trained_on = [r for r, k in zip(rows, folds) if k != fold]
    held_out = [r for r, k in zip(rows, folds) if k == fold]
    check_no_shared_groups(trained_on, held_out, f"{what}, fold {fold}")
    return trained_on, held_out


def stratified_split(rows, test_size, seed, what="labels", grouped=False):
    """(train rows, test rows), each class in about the same proportion; both sorted by path for stable files.

    grouped: whole groups go to one side (the first of round(1 / test_size) stratified group folds, so the
    test share is approximate); otherwise images are split one by one.
    """
    if grouped:
        n_splits = max(2, round(1 / test_size))
        train, test = grouped_folds(rows, n_splits, seed, what)[0]
        if not {r["label"] for r in test} >= {r["label"] for r in rows}:
            raise PipelineError(f"{what}: test_size={test_size} leaves a class out of a grouped split; "
                                "use more images or a larger test_size")
        return train, test
    _check_classes(rows, what)
    labels = [r["label"] for r in rows]
    try:
        train, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=labels)
    except ValueError as err:
        raise PipelineError(f"{what}: cannot split with test_size={test_size}: {err}") from None
    by_path = lambda r: r["path"]  # noqa: E731
    return sorted(train, key=by_path), sorted(test, key=by_path)


def shared_groups(first, second):
    """Groups with images on both sides, sorted."""
    return sorted({r.get("group") for r in first if r.get("group")} & {r.get("group") for r in second if r.get("group")})


def check_no_shared_groups(first, second, what):
    """Checked, not assumed: raise if any group sits on both sides."""
    shared = shared_groups(first, second)
    if shared:
        raise PipelineError(f"{what}: group(s) {', '.join(shared[:5])} on both sides of the split")


def pairs_across(first, second, pairs):
    """The near-copy ``pairs`` of paths with one image in each of two manifests."""
    a, b = {r["path"] for r in first}, {r["path"] for r in second}
    return [(x, y) for x, y in pairs if (x in a and y in b) or (x in b and y in a)]
