"""The two classes and their 0/1 targets: the one fact every stage, predict and serve share."""
import numpy as np

CLASSES = ("Negative", "Positive")  # index = the model's target: 1 means Positive


def label_of(probability, threshold):
    """The class name of P(Positive): Positive at or above ``threshold``."""
    return CLASSES[int(probability >= threshold)]


def targets(rows):
    """0/1 targets from a table's labels: 1 means Positive."""
    return np.array([CLASSES.index(r["label"]) for r in rows], dtype=np.float32)


def class_counts(rows):
    """{class name: rows with that label}."""
    return {c: sum(r["label"] == c for r in rows) for c in CLASSES}
