import numpy as np
import pytest
from PIL import Image

from valence import params, training


def manifest(tmp_path, per_class=8, size=96):
    """Bright images are Positive, dark ones Negative: learnable, tiny and fast."""
    rows, rng = [], np.random.default_rng(0)
    for label, base in (("Negative", 40), ("Positive", 200)):
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype("uint8")
            path = tmp_path / f"{label}_{i}.png"
            Image.fromarray(pixels).save(path)
            rows.append({"path": str(path), "label": label})
    return rows


def tiny_params(model="small_cnn", seed=21, **changes):
    """Tiny train params: ``changes`` go to the model's own section."""
    shared = params.TrainParams(batch_size=4, validation_size=0.25, seed=seed)
    return shared.using(model, **{**dict(image_height=96, image_width=96, epochs=2, patience=0), **changes})


def test_carve_validation_is_stratified_and_disjoint(tmp_path):
    rows = manifest(tmp_path)
    fit, val = training.carve_validation(rows, 0.25, seed=1)
    assert sorted(r["label"] for r in val) == ["Negative"] * 2 + ["Positive"] * 2
    assert not {r["path"] for r in fit} & {r["path"] for r in val}
    assert training.carve_validation(rows, 0, seed=1) == (rows, [])


def test_class_weights_balance_the_classes():
    y = np.array([0] * 10 + [1] * 30, dtype=np.float32)
    weights = training.class_weights(y, "balanced")
    assert weights == pytest.approx({0: 40 / 20, 1: 40 / 60})
    assert weights[0] * 10 == pytest.approx(weights[1] * 30)  # each class carries the same total weight
    assert training.class_weights(y, "none") is None


@pytest.mark.parametrize("model, changes, expected", [
    ("mobilenet_v2", dict(fine_tune_epochs=3, fine_tune_learning_rate=1e-5), [("head", 2, 1e-3), ("fine_tune", 3, 1e-5)]),
    ("mobilenet_v2", dict(fine_tune_epochs=0), [("head", 2, 1e-3)]),
    ("small_cnn", {}, [("train", 2, 1e-3)]),
    ("seed_baseline", {}, [("train", 2, 1e-3)]),
])
def test_phases_come_from_the_chosen_models_section(model, changes, expected):
    p = tiny_params(model=model, learning_rate=1e-3, **changes)
    assert training.phases(p) == expected


def test_training_is_reproducible(tmp_path):
    rows = manifest(tmp_path)
    runs = [training.train(tiny_params(), rows) for _ in range(2)]
    (model_a, history_a), (model_b, history_b) = runs
    assert all(np.array_equal(a, b) for a, b in zip(model_a.get_weights(), model_b.get_weights()))
    assert history_a == history_b
    assert [r["epoch"] for r in history_a] == [1, 2] and {r["phase"] for r in history_a} == {"train"}
    assert set(training.HISTORY_COLUMNS) <= set(history_a[0])


@pytest.mark.parametrize("decay, final_rate", [("none", 1e-3), ("cosine", 0.0)])
def test_learning_rate_decay_spans_the_phase(tmp_path, decay, final_rate):
    model, _ = training.train(tiny_params(learning_rate=1e-3, learning_rate_decay=decay), manifest(tmp_path))
    assert int(model.optimizer.iterations) == 2 * 3  # 2 epochs of 12 fit images in batches of 4
    assert float(model.optimizer.learning_rate) == pytest.approx(final_rate, abs=1e-9)


def test_another_seed_gives_other_weights(tmp_path):
    rows = manifest(tmp_path)
    a = training.train(tiny_params(epochs=1), rows)[0].get_weights()
    b = training.train(tiny_params(epochs=1, seed=7), rows)[0].get_weights()
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_mobilenet_trains_head_then_fine_tunes_top_blocks(tmp_path):
    rows = manifest(tmp_path, per_class=6)
    p = tiny_params(model="mobilenet_v2", epochs=1, fine_tune_epochs=1, fine_tune_blocks=1)
    model, history = training.train(p, rows, weights=None)
    assert [(r["epoch"], r["phase"]) for r in history] == [(1, "head"), (2, "fine_tune")]
    backbone = model.layers[2]
    assert backbone.get_layer("block_16_project").trainable and not backbone.get_layer("block_15_project").trainable


def test_efficientnet_lite_trains_head_then_top_blocks_on_cached_views(tmp_path):
    rows = manifest(tmp_path, per_class=6, size=64)
    p = tiny_params(model="efficientnet_lite0", image_height=64, image_width=64, epochs=1, fine_tune_epochs=1,
                    fine_tune_blocks=2, cached_views=2, fine_tune_learning_rate=0.01)
    training.compute.configure(p.seed)
    before = training.build(p, weights=None).get_weights()
    model, history = training.train(p, rows, weights=None)
    assert [r["phase"] for r in history] == ["head", "fine_tune"]
    changed = {w.path.split("/")[-2] for w, old in zip(model.weights, before) if not np.array_equal(w, old)}
    assert {"block15_project", "block14_project", "top_conv"} <= changed
    assert not any(name.startswith(("block13", "stem")) or name.endswith("_bn") for name in changed)


def test_early_stopping_restores_the_best_epoch(tmp_path):
    rows = manifest(tmp_path)
    # a learning rate this high makes validation AUC stall at once, so patience 1 stops long before 20 epochs
    model, history = training.train(tiny_params(epochs=20, patience=1, learning_rate=5.0), rows)
    assert len(history) < 20
    assert history[-2]["val_auc"] == max(r["val_auc"] for r in history)  # monitored val AUC, higher is better


def test_cached_views_cover_every_image_once_an_epoch_reproducibly():
    features = np.arange(3 * 10, dtype=np.float32).reshape(3, 10, 1)  # view v of image i holds 10·v + i
    y = np.array([0, 1] * 5, dtype=np.float32)
    runs = []
    for _ in range(2):
        data = training.CachedViews(features, y, {0: 2.0, 1: 0.5}, batch_size=4, seed=5)
        epochs = []
        for _ in range(3):
            x, labels, weights = map(np.concatenate, zip(*[data[i] for i in range(len(data))]))
            image, view = x[:, 0].astype(int) % 10, x[:, 0].astype(int) // 10
            assert sorted(image) == list(range(10)) and set(view) <= {0, 1, 2}
            np.testing.assert_array_equal(labels, y[image])
            np.testing.assert_array_equal(weights, np.where(y[image] == 1, 0.5, 2.0))
            epochs.append(x[:, 0].tolist())
            data.on_epoch_end()
        runs.append(epochs)
    assert runs[0] == runs[1]  # same seed, same order and views
    assert runs[0][0] != runs[0][1]  # a new order and new views each epoch


@pytest.mark.parametrize("cached_views", [0, 2])
def test_mobilenet_cached_or_not_trains_the_same_layers(tmp_path, cached_views):
    rows = manifest(tmp_path, per_class=6)
    p = tiny_params(model="mobilenet_v2", epochs=1, fine_tune_epochs=1, fine_tune_blocks=2, cached_views=cached_views,
                    fine_tune_learning_rate=0.01)  # large enough to move every trainable weight in one epoch
    training.compute.configure(p.seed)
    before = training.build(p, weights=None).get_weights()  # seeded: the weights train() starts from
    model, history = training.train(p, rows, weights=None)
    backbone = model.layers[2]
    changed = {w.path.split("/")[-2] for w, old in zip(model.weights, before) if not np.array_equal(w, old)}
    assert any(name.startswith("block_16") for name in changed) and any(name.startswith("block_15") for name in changed)
    assert not any(name.startswith(("block_14", "block_13", "Conv1")) for name in changed)
    assert not backbone.get_layer("block_14_project").trainable
    assert [r["phase"] for r in history] == ["head", "fine_tune"]


def test_cached_training_is_reproducible(tmp_path):
    rows = manifest(tmp_path, per_class=6)
    p = tiny_params(model="mobilenet_v2", epochs=2, fine_tune_epochs=1, fine_tune_blocks=1, cached_views=3)
    (a, history_a), (b, history_b) = [training.train(p, rows, weights=None) for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert history_a == history_b
