"""Stratified, seeded train/test split of the labels table into manifests (path, label)."""
from collections import Counter

from sklearn.model_selection import train_test_split

from valence.errors import PipelineError

MANIFEST_COLUMNS = ["path", "label"]


def stratified_split(rows, test_size, seed, what="labels"):
    """(train rows, test rows), each class in the same proportion; both sorted by path for stable files."""
    labels = [r["label"] for r in rows]
    counts = Counter(labels)
    if len(counts) < 2:
        raise PipelineError(f"{what}: only one class ({', '.join(counts) or 'none'}) — need Negative and Positive")
    rare = {c: n for c, n in counts.items() if n < 2}
    if rare:
        raise PipelineError(f"{what}: too few images to stratify: {rare} (each class needs at least 2)")
    try:
        train, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=labels)
    except ValueError as err:
        raise PipelineError(f"{what}: cannot split with test_size={test_size}: {err}") from None
    by_path = lambda r: r["path"]  # noqa: E731
    return sorted(train, key=by_path), sorted(test, key=by_path)


def class_counts(rows, classes):
    return {c: sum(r["label"] == c for r in rows) for c in classes}
