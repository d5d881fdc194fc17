"""The two classes and their 0/1 targets, and the ratings beside them: the facts every stage, predict and serve
share."""
import numpy as np

CLASSES = ("Negative", "Positive")  # index = the model's target: 1 means Positive
UNCERTAIN = "Uncertain"  # the label of a P(Positive) within evaluate.uncertain_band of the threshold
RATINGS = ("valence", "arousal")  # rated dimensions a dataset may carry beside its labels (OASIS: means of 1–7)


def label_of(probability, threshold, band=0.0):
    """The label of P(Positive): Positive at or above ``threshold``, Negative below, Uncertain where it lies
    less than ``band`` from the threshold (band 0: never)."""
    return UNCERTAIN if abs(probability - threshold) < band else CLASSES[int(probability >= threshold)]


def targets(rows):
    """0/1 targets from a table's labels: 1 means Positive."""
    return np.array([CLASSES.index(r["label"]) for r in rows], dtype=np.float32)


def ratings(rows, name):
    """``name``'s rating of each row as a float array, NaN where the row has none."""
    return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])


def class_counts(rows):
    """{class name: rows with that label}."""
    return {c: sum(r["label"] == c for r in rows) for c in CLASSES}


def scale_of(rating, declared=(), name="the rating"):
    """The rating scale a model records: ``declared`` (unzip.rating_scale), which every rating must lie in, or
    without it the rated training images' range widened to whole numbers (1.3–6.6 → 1–7)."""
    from valence.errors import PipelineError

    low, high = float(np.nanmin(rating)), float(np.nanmax(rating))
    if not declared:
        return float(np.floor(low)), float(np.ceil(high))
    if low < declared[0] or high > declared[1]:
        raise PipelineError(f"{name} ratings run from {low:g} to {high:g}, outside unzip.rating_scale "
                            f"[{declared[0]:g}, {declared[1]:g}]; set the questionnaire's scale, or [] to take "
                            "the rated range")
    return float(declared[0]), float(declared[1])
