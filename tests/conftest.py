"""Fixtures shared by test modules."""
import os

import pytest

from browser import chromium_binary
from helpers import save_tiny_model


@pytest.fixture(scope="session")
def chromium():
    """The Chromium binary for real-browser tests; skipped where it is missing, unless CI requires it."""
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("VALENCE_REQUIRE_CHROMIUM"):  # .ci/run sets it: CI must not skip the browser check
            pytest.fail("Chromium is required (VALENCE_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("Chromium is not installed (apt install chromium; .ci/run does)")
    return binary


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(.keras, .tflite): one tiny untrained classifier (helpers.save_tiny_model) and its LiteRT export, made once
    for every test that needs model files but not a trained model. Tests read them, never write them."""
    from valence.learn import models

    folder = tmp_path_factory.mktemp("tiny-model")
    keras_path = save_tiny_model(folder / "model.keras")
    models.export_litert(models.load(keras_path), folder / "model.tflite")
    return keras_path, folder / "model.tflite"


@pytest.fixture(scope="session")
def tiny_rating_models(tmp_path_factory, tiny_models):
    """(.keras, .tflite, heads): the tiny classifier with rating heads (valence 1–7, arousal 1–7) on the features
    its head reads, as the train stage adds them; heads: {rating: the fitted ridge head}."""
    import keras
    import numpy as np

    from valence.learn import models, rating_heads

    layers = models.load(tiny_models[0]).layers
    inputs = features_out = keras.Input((24, 32, 3))
    for layer in layers[:-1]:
        features_out = layer(features_out)
    head = keras.layers.Dense(1, activation="sigmoid", name="head")  # called once, as with_head's is
    model = keras.Model(inputs, head(features_out))  # functional, as the released frozen model is
    head.set_weights(layers[-1].get_weights())
    features = keras.Model(inputs, features_out)
    batch = np.random.default_rng(1).integers(0, 256, (64, 24, 32, 3)).astype("float32")
    x = np.asarray(features(batch))[None]
    heads = {"valence": rating_heads.fit(x, 4 + 40 * x[0, :, 0] - 30 * x[0, :, 1], 1e-3),
             "arousal": rating_heads.fit(x, 3 + 50 * x[0, :, 2], 1e-3)}
    rated = rating_heads.with_ratings(model, heads, {"valence": (1.0, 7.0), "arousal": (1.0, 7.0)})
    folder = tmp_path_factory.mktemp("tiny-rating-model")
    rated.save(folder / "model.keras")
    models.export_litert(models.load(folder / "model.keras"), folder / "model.tflite")
    return folder / "model.keras", folder / "model.tflite", heads


@pytest.fixture(scope="session")
def tiny_checked_models(tmp_path_factory, tiny_rating_models):
    """(.keras, .tflite): the tiny rated classifier with a photo check (photo_check.with_photo_check) that
    scores dark images as photos and bright ones as not, its threshold 0.5 (so "photo" is P(photo))."""
    import numpy as np

    from valence.learn import models, photo_check

    rated = models.load(tiny_rating_models[0])
    features = rated.get_layer("head").input
    import keras

    extract = keras.Model(rated.input, features)
    rng = np.random.default_rng(2)
    dark, bright = (np.asarray(extract(rng.integers(lo, hi, (64, 24, 32, 3)).astype("float32")))[None]
                    for lo, hi in ((0, 100), (156, 256)))
    checked = photo_check.with_photo_check(rated, photo_check.fit(dark, bright, 1.0), threshold=0.5)
    folder = tmp_path_factory.mktemp("tiny-checked-model")
    checked.save(folder / "model.keras")
    models.export_litert(models.load(folder / "model.keras"), folder / "model.tflite")
    return folder / "model.keras", folder / "model.tflite"
