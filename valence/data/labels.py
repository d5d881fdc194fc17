"""The two classes and their 0/1 targets, and the ratings beside them: the facts every stage, predict and serve
share."""
import re

import numpy as np

CLASSES = ("Negative", "Positive")  # index = the model's target: 1 means Positive
RATINGS = ("valence", "arousal")  # rated dimensions a dataset may carry beside its labels (OASIS: means of 1–7)
PHOTO = "photo"  # the released model's photo check output: below 0.5, not like the photos it learnt from


def label_of(probability, threshold):
    """The class name of P(Positive): Positive at or above ``threshold``."""
    return CLASSES[int(probability >= threshold)]


def targets(rows):
    """0/1 targets from a table's labels: 1 means Positive."""
    return np.array([CLASSES.index(r["label"]) for r in rows], dtype=np.float32)


def ratings(rows, name):
    """``name``'s rating of each row as a float array, NaN where the row has none."""
    return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])


def class_counts(rows):
    """{class name: rows with that label}."""
    return {c: sum(r["label"] == c for r in rows) for c in CLASSES}


def output_name(rating, scale):
    """The released model's output for ``rating`` names it and its scale: "valence_1_to_7" ("m" for minus)."""
    def number(value):
        return f"{value:g}".replace("-", "m").replace(".", "p")
    return f"{rating}_{number(scale[0])}_to_{number(scale[1])}"


def parse_output_name(name):
    """(rating, (low, high)) of an ``output_name``; None for any other output."""
    match = re.fullmatch(r"([a-z]+)_(m?[\dp]+)_to_(m?[\dp]+)", name)
    if not match:
        return None
    low, high = (float(part.replace("m", "-").replace("p", ".")) for part in match.groups()[1:])
    return match.group(1), (low, high)
