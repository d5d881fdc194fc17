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
