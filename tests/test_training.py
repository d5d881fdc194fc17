import csv
from dataclasses import replace

import numpy as np
from PIL import Image

from valence import params, training


def manifest(tmp_path, per_class=8):
    """Bright images are Positive, dark ones Negative: learnable, tiny and fast."""
    rows, rng = [], np.random.default_rng(0)
    for label, base in (("Negative", 40), ("Positive", 200)):
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 20, (96, 96, 3)), 0, 255).astype("uint8")
            path = tmp_path / f"{label}_{i}.png"
            Image.fromarray(pixels).save(path)
            rows.append({"path": str(path), "label": label})
    return rows


def tiny_params(**changes):
    settings = dict(image_height=96, image_width=96, epochs=2, batch_size=4, validation_size=0.25)
    return replace(params.TrainParams(), **{**settings, **changes})


def test_carve_validation_is_stratified_and_disjoint(tmp_path):
    rows = manifest(tmp_path)
    fit, val = training.carve_validation(rows, 0.25, seed=1)
    assert sorted(r["label"] for r in val) == ["Negative"] * 2 + ["Positive"] * 2
    assert not {r["path"] for r in fit} & {r["path"] for r in val}
    assert training.carve_validation(rows, 0, seed=1) == (rows, [])


def test_training_is_reproducible_and_writes_history(tmp_path):
    rows = manifest(tmp_path)
    runs = []
    for run in range(2):
        history = tmp_path / f"history{run}.csv"
        model = training.train(tiny_params(), rows, history)
        runs.append((model.get_weights(), history.read_text()))
    (weights_a, history_a), (weights_b, history_b) = runs
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))
    assert history_a == history_b
    with open(tmp_path / "history0.csv") as f:
        history_rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history_rows] == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history_rows[0])


def test_another_seed_gives_other_weights(tmp_path):
    rows = manifest(tmp_path)
    a = training.train(tiny_params(epochs=1), rows, tmp_path / "a.csv").get_weights()
    b = training.train(tiny_params(epochs=1, seed=7), rows, tmp_path / "b.csv").get_weights()
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))
