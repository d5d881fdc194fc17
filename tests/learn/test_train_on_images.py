import csv
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, repo_params
from valence.learn import train_on_images
from valence.learn.train_on_images import augments, dataset, random_affine


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
    shared = dataclasses.replace(repo_params("train"), batch_size=4, validation_size=0.25, seed=seed)
    return shared.using(model, **{**dict(image_height=96, image_width=96, epochs=2, patience=0), **changes})


def augment_params(**changes):
    """The project's train.augment with ``changes``."""
    return dataclasses.replace(repo_params("train").augment, **changes)


OFF = augment_params(rotation_degrees=0, width_shift=0, height_shift=0, shear_degrees=0, zoom=0,
                     horizontal_flip=False)


def batch_of_images(n=3, size=24):
    rng = np.random.default_rng(1)
    return rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def affine(x, augment, seed):
    return np.asarray(random_affine(x, augment, np.array(seed, dtype=np.int64)))


def test_all_off_augments_nothing():
    assert not augments(OFF)
    assert augments(augment_params(rotation_degrees=0, width_shift=0, height_shift=0, shear_degrees=0, zoom=0))


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "wrap", "constant"])
def test_random_affine_reproducible_and_changes_input(fill_mode):
    x = batch_of_images()
    augment = augment_params(fill_mode=fill_mode)
    first = affine(x, augment, [1, 2])
    np.testing.assert_array_equal(first, affine(x, augment, [1, 2]))
    assert first.shape == x.shape and not np.allclose(first, x)
    assert not np.allclose(first, affine(x, augment, [1, 3]))  # another seed, other views
    assert not np.allclose(first[0], first[1])  # each image its own draw


def test_random_affine_with_zero_ranges_is_identity():
    x = batch_of_images()
    np.testing.assert_allclose(affine(x, OFF, [4, 5]), x, atol=1e-3)


def test_random_affine_flip_only_mirrors_some_images():
    x = batch_of_images(n=16)
    flip_only = augment_params(rotation_degrees=0, width_shift=0, height_shift=0, shear_degrees=0, zoom=0)
    out = affine(x, flip_only, [0, 9])
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, x)]
    kept = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, x)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_random_affine_shift_moves_content_within_its_range():
    """A bright column moves sideways by at most width_shift × width, and moves for some draw."""
    x = np.zeros((8, 20, 40, 3), dtype=np.float32)
    x[:, :, 20] = 255
    shift_only = augment_params(rotation_degrees=0, width_shift=0.25, height_shift=0, shear_degrees=0, zoom=0,
                               horizontal_flip=False, fill_mode="constant")
    columns = affine(x, shift_only, [2, 2])[:, 10, :, 0].argmax(axis=1)
    assert np.all(np.abs(columns - 20) <= 10) and np.any(columns != 20)


def ids_images(n, h=4, w=5):
    """Image i is filled with the value i, so labels and pixels can be matched after shuffling."""
    return np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, h, w, 3), dtype=np.uint8)


def epoch(data):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data])
    return xs, ys


def test_dataset_batches_and_pairs():
    n = 10
    data = dataset(ids_images(n), np.arange(n), batch_size=4)
    xs, ys = epoch(data)
    assert [len(y) for y in ys] == [4, 4, 2]
    for x, y in zip(xs, ys):
        assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape[1:] == (4, 5, 3)
        np.testing.assert_array_equal(x[:, 0, 0, 0], y)
    np.testing.assert_array_equal(np.concatenate(ys), np.arange(n))  # unshuffled keeps order


def test_dataset_shuffle_covers_all_reproducibly():
    n = 50
    order = lambda ys: np.concatenate(ys).astype(int).tolist()  # noqa: E731
    data = dataset(ids_images(n), np.arange(n), batch_size=8, seed=7)
    first_xs, first = epoch(data)
    _, second = epoch(data)
    for ys in (first, second):
        assert sorted(order(ys)) == list(range(n))
    for x, y in zip(first_xs, first):
        np.testing.assert_array_equal(x[:, 0, 0, 0], y)  # images move with their labels
    assert order(first) != list(range(n))
    assert order(first) != order(second)  # reshuffled each epoch
    assert order(epoch(dataset(ids_images(n), np.arange(n), batch_size=8, seed=7))[1]) == order(first)


def test_dataset_with_augmentation_is_reproducible_per_seed_and_epoch():
    n = 6
    images = batch_of_images(n).astype(np.uint8)
    data = dataset(images, np.zeros(n), batch_size=4, seed=0, augment=augment_params())
    xs, ys = epoch(data)
    assert [x.shape for x in xs] == [(4, 24, 24, 3), (2, 24, 24, 3)]
    assert all(x.dtype == np.float32 for x in xs)
    again = dataset(images, np.zeros(n), batch_size=4, seed=0, augment=augment_params())
    np.testing.assert_array_equal(np.concatenate(xs), np.concatenate(epoch(again)[0]))
    assert not np.array_equal(np.concatenate(xs), np.concatenate(epoch(data)[0]))  # new views next epoch
    identity = dataset(ids_images(n), np.arange(n), batch_size=4, augment=OFF)
    np.testing.assert_array_equal(np.concatenate(epoch(identity)[0]), ids_images(n).astype(np.float32))


def test_dataset_unshuffled_views_keep_image_order():
    n = 5
    data = dataset(ids_images(n, 8, 8), np.arange(n), batch_size=2, seed=3, augment=augment_params(), shuffle=False)
    np.testing.assert_array_equal(np.concatenate(epoch(data)[1]), np.arange(n))


@pytest.mark.parametrize("n, batch, replicas, used", [
    (9, 4, 1, 9), (9, 4, 2, 8),  # a last batch of 1 on 2 replicas would leave one empty: it sits out
    (10, 4, 2, 10), (11, 4, 4, 8), (8, 4, 2, 8), (3, 4, 2, 3), (2, 4, 2, 2)])
def test_images_per_epoch_drops_only_a_last_batch_smaller_than_the_replicas(n, batch, replicas, used):
    assert train_on_images.images_per_epoch(n, batch, replicas) == used


def test_fewer_training_images_than_devices_is_a_clear_error():
    from valence.errors import PipelineError

    with pytest.raises(PipelineError, match="1 training image.s. cannot give each of 2 devices one"):
        train_on_images.images_per_epoch(1, 4, 2)


def test_dataset_on_two_replicas_leaves_a_different_image_out_each_epoch():
    n = 9
    data = dataset(ids_images(n), np.arange(n), batch_size=4, seed=7, replicas=2)
    left_out = []
    for _ in range(4):
        xs, ys = epoch(data)
        assert [len(y) for y in ys] == [4, 4]
        for x, y in zip(xs, ys):
            np.testing.assert_array_equal(x[:, 0, 0, 0], y)
        left_out.append(set(range(n)) - set(np.concatenate(ys).astype(int).tolist()))
    assert all(len(out) == 1 for out in left_out) and len(set.union(*left_out)) > 1
    one_device = dataset(ids_images(n), np.arange(n), batch_size=4, seed=7)  # replicas=1: every image, as before
    assert [len(y) for y in epoch(one_device)[1]] == [4, 4, 1]


def test_cached_views_on_two_replicas_keep_the_one_device_order_less_its_last_image():
    features, y = np.arange(9, dtype=np.float32).reshape(1, 9, 1), np.array([0, 1] * 4 + [0], dtype=np.float32)
    one, two = (train_on_images.CachedViews(features, y, None, batch_size=4, seed=5, replicas=r) for r in (1, 2))
    assert (len(one), len(two)) == (3, 2)
    for _ in range(2):
        order = [np.concatenate([data[i][0][:, 0] for i in range(len(data))]) for data in (one, two)]
        np.testing.assert_array_equal(order[1], order[0][:8])
        one.on_epoch_end(), two.on_epoch_end()


def test_carve_validation_is_stratified_and_disjoint(tmp_path):
    rows = manifest(tmp_path)
    fit, val = train_on_images.carve_validation(rows, 0.25, seed=1)
    assert sorted(r["label"] for r in val) == ["Negative"] * 2 + ["Positive"] * 2
    assert not {r["path"] for r in fit} & {r["path"] for r in val}
    assert train_on_images.carve_validation(rows, 0, seed=1) == (rows, [])


def test_class_weights_balance_the_classes():
    y = np.array([0] * 10 + [1] * 30, dtype=np.float32)
    weights = train_on_images.class_weights(y, "balanced")
    assert weights == pytest.approx({0: 40 / 20, 1: 40 / 60})
    assert weights[0] * 10 == pytest.approx(weights[1] * 30)  # each class carries the same total weight
    assert train_on_images.class_weights(y, "none") is None


@pytest.mark.parametrize("model, changes, expected", [
    ("mobilenet_v2", dict(fine_tune_epochs=3, fine_tune_learning_rate=1e-5), [("head", 2, 1e-3), ("fine_tune", 3, 1e-5)]),
    ("mobilenet_v2", dict(fine_tune_epochs=0), [("head", 2, 1e-3)]),
    ("small_cnn", {}, [("train", 2, 1e-3)]),
    ("seed_baseline", {}, [("train", 2, 1e-3)]),
])
def test_phases_come_from_the_chosen_models_section(model, changes, expected):
    p = tiny_params(model=model, learning_rate=1e-3, **changes)
    assert train_on_images.phases(p) == expected


def test_training_is_reproducible(tmp_path):
    rows = manifest(tmp_path)
    runs = [train_on_images.train(tiny_params(), rows) for _ in range(2)]
    (model_a, history_a), (model_b, history_b) = runs
    assert all(np.array_equal(a, b) for a, b in zip(model_a.get_weights(), model_b.get_weights()))
    assert history_a == history_b
    assert [r["epoch"] for r in history_a] == [1, 2] and {r["phase"] for r in history_a} == {"train"}
    assert {"epoch", "phase", "loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"} <= set(history_a[0])


@pytest.mark.parametrize("decay, final_rate", [("none", 1e-3), ("cosine", 0.0)])
def test_learning_rate_decay_spans_the_phase(tmp_path, decay, final_rate):
    model, _ = train_on_images.train(tiny_params(learning_rate=1e-3, learning_rate_decay=decay), manifest(tmp_path))
    assert int(model.optimizer.iterations) == 2 * 3  # 2 epochs of 12 fit images in batches of 4
    assert float(model.optimizer.learning_rate) == pytest.approx(final_rate, abs=1e-9)


def test_another_seed_gives_other_weights(tmp_path):
    rows = manifest(tmp_path)
    a = train_on_images.train(tiny_params(epochs=1), rows)[0].get_weights()
    b = train_on_images.train(tiny_params(epochs=1, seed=7), rows)[0].get_weights()
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_mobilenet_trains_head_then_fine_tunes_top_blocks(tmp_path):
    rows = manifest(tmp_path, per_class=6)
    p = tiny_params(model="mobilenet_v2", epochs=1, fine_tune_epochs=1, fine_tune_blocks=1)
    model, history = train_on_images.train(p, rows, weights=None)
    assert [(r["epoch"], r["phase"]) for r in history] == [(1, "head"), (2, "fine_tune")]
    backbone = model.layers[2]
    assert backbone.get_layer("block_16_project").trainable and not backbone.get_layer("block_15_project").trainable


def test_efficientnet_lite_trains_head_then_top_blocks_on_cached_views(tmp_path):
    rows = manifest(tmp_path, per_class=6, size=64)
    p = tiny_params(model="efficientnet_lite0", image_height=64, image_width=64, epochs=1, fine_tune_epochs=1,
                    fine_tune_blocks=2, cached_views=2, fine_tune_learning_rate=0.01)
    train_on_images.runtime.configure(p.seed)
    before = train_on_images.build(p, weights=None).get_weights()
    model, history = train_on_images.train(p, rows, weights=None)
    assert [r["phase"] for r in history] == ["head", "fine_tune"]
    changed = {w.path.split("/")[-2] for w, old in zip(model.weights, before) if not np.array_equal(w, old)}
    assert {"block15_project", "block14_project", "top_conv"} <= changed
    assert not any(name.startswith(("block13", "stem")) or name.endswith("_bn") for name in changed)


def test_early_stopping_restores_the_best_epoch(tmp_path):
    rows = manifest(tmp_path)
    # a learning rate this high makes validation AUC stall at once, so patience 1 stops long before 20 epochs
    model, history = train_on_images.train(tiny_params(epochs=20, patience=1, learning_rate=5.0), rows)
    assert len(history) < 20
    assert history[-2]["val_auc"] == max(r["val_auc"] for r in history)  # monitored val AUC, higher is better


def test_cached_views_cover_every_image_once_an_epoch_reproducibly():
    features = np.arange(3 * 10, dtype=np.float32).reshape(3, 10, 1)  # view v of image i holds 10·v + i
    y = np.array([0, 1] * 5, dtype=np.float32)
    runs = []
    for _ in range(2):
        data = train_on_images.CachedViews(features, y, {0: 2.0, 1: 0.5}, batch_size=4, seed=5)
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
    train_on_images.runtime.configure(p.seed)
    before = train_on_images.build(p, weights=None).get_weights()  # seeded: the weights train() starts from
    model, history = train_on_images.train(p, rows, weights=None)
    backbone = model.layers[2]
    changed = {w.path.split("/")[-2] for w, old in zip(model.weights, before) if not np.array_equal(w, old)}
    assert any(name.startswith("block_16") for name in changed) and any(name.startswith("block_15") for name in changed)
    assert not any(name.startswith(("block_14", "block_13", "Conv1")) for name in changed)
    assert not backbone.get_layer("block_14_project").trainable
    assert [r["phase"] for r in history] == ["head", "fine_tune"]


def test_one_live_run_spans_both_phases(tmp_path):
    """Every epoch goes to dvclive as one step (step = epoch), train/… and eval/… metrics and the phase."""
    from dvclive import Live

    rows = manifest(tmp_path, per_class=6)
    p = tiny_params(model="mobilenet_v2", epochs=2, fine_tune_epochs=1, fine_tune_blocks=1, cached_views=2)
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        live.step = 1
        _, history = train_on_images.train(p, rows, weights=None, live=live)
    curves = tmp_path / "live/plots/metrics"
    phases = list(csv.DictReader((curves / "phase.tsv").open(), delimiter="\t"))
    assert [(r["step"], r["phase"]) for r in phases] == [("1", "head"), ("2", "head"), ("3", "fine_tune")]
    for name, column in (("train/loss", "loss"), ("eval/auc", "val_auc")):
        logged = [float(r[name.split("/")[1]]) for r in csv.DictReader((curves / f"{name}.tsv").open(), delimiter="\t")]
        assert logged == pytest.approx([r[column] for r in history], abs=1e-6)
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["step"] == 3 and summary["phase"] == "fine_tune"
    assert summary["eval"]["auc"] == pytest.approx(history[-1]["val_auc"], abs=1e-6)


def test_cached_training_is_reproducible(tmp_path):
    rows = manifest(tmp_path, per_class=6)
    p = tiny_params(model="mobilenet_v2", epochs=2, fine_tune_epochs=1, fine_tune_blocks=1, cached_views=3)
    (a, history_a), (b, history_b) = [train_on_images.train(p, rows, weights=None) for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert history_a == history_b


MIRRORED = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]  # two logical devices, before TensorFlow starts: two replicas
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests", sys.argv[1] + "/tests/learn"]
import keras
import numpy as np
from test_train_on_images import manifest, tiny_params
from pathlib import Path
from valence import runtime
from valence.data import images, labels
from valence.learn import models, train_on_images

work, model_name, changes = Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
p = tiny_params(model=model_name, **changes)
rows = manifest(work, per_class=6)
model, history = train_on_images.train(p, rows, weights=None)
fit, val = train_on_images.carve_validation(rows, p.validation_size, p.seed)  # the slice train() validated on
probability = model.predict(images.load_images([r["path"] for r in val], p.hyper.image_height, p.hyper.image_width),
                            verbose=0)
y_val = labels.targets(val)
auc = keras.metrics.AUC()
auc.update_state(y_val, probability)
model.save(work / "model.keras")
loaded = models.load(work / "model.keras")
print(json.dumps({"replicas": runtime.strategy().num_replicas_in_sync, "fit": len(fit), "batch_size": p.batch_size,
                  "variable": type(model.trainable_weights[0].value).__name__,
                  "finite": bool(all(np.isfinite(w).all() for w in loaded.get_weights())),
                  "history": history,
                  "val": {"accuracy": float(np.mean((probability[:, 0] >= 0.5) == y_val)), "auc": float(auc.result())},
                  "layers": [[l.__class__.__name__, [list(w.shape) for w in l.weights]] for l in loaded.layers],
                  "input": list(loaded.input_shape), "output": list(loaded.output_shape)}))
"""


@pytest.mark.parametrize("model, changes, onednn", [
    # TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; an
    # empty replica batch crashes oneDNN's BatchNormalization and turns TensorFlow's own into NaN: test both.
    ("small_cnn", {}, "1"),
    ("small_cnn", {}, "0"),
    ("mobilenet_v2", dict(epochs=1, fine_tune_epochs=1, fine_tune_blocks=1, cached_views=2), "1"),  # feature cache
])
def test_two_devices_train_under_mirrored_strategy_and_save_the_same_kind_of_model(tmp_path, model, changes, onednn):
    import os
    import subprocess
    import sys

    from valence.learn import models

    root = str(ROOT)
    result = subprocess.run([sys.executable, "-c", MIRRORED, root, str(tmp_path), model, json.dumps(changes)],
                            capture_output=True, text=True, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn})
    assert result.returncode == 0, result.stderr[-3000:]
    mirrored = json.loads(result.stdout.strip().splitlines()[-1])
    assert mirrored["fit"] % mirrored["batch_size"] == 1  # the case that failed: a last training batch of one image
    assert mirrored["replicas"] == 2 and mirrored["variable"] == "MirroredVariable"
    assert "training on 2 devices (MirroredStrategy)" in result.stdout
    assert mirrored["finite"] and all(np.isfinite(r["loss"]) for r in mirrored["history"])
    last = mirrored["history"][-1]  # validation scores the real images only, not its weight-0 padding
    assert last["val_accuracy"] == pytest.approx(mirrored["val"]["accuracy"], abs=1e-6)
    assert last["val_auc"] == pytest.approx(mirrored["val"]["auc"], abs=1e-5)
    assert [r["phase"] for r in mirrored["history"]] == (["head", "fine_tune"] if model == "mobilenet_v2"
                                                          else ["train", "train"])
    single = models.build(tiny_params(model=model, **changes), weights=None)  # this process: one device
    assert mirrored["layers"] == [[l.__class__.__name__, [list(w.shape) for w in l.weights]] for l in single.layers]
    assert (mirrored["input"], mirrored["output"]) == ([None, *single.input_shape[1:]], [None, 1])
