import numpy as np
import pytest

from valence import models
from valence.errors import PipelineError


def test_seed_baseline_layers_and_shapes_at_the_seed_size():
    model = models.build("seed_baseline", 400, 500, learning_rate=1e-3)
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
    assert model.loss == "binary_crossentropy"


def test_too_small_images_are_a_clear_error():
    with pytest.raises(PipelineError, match="seed_baseline cannot take 48×60 images"):
        models.build("seed_baseline", 48, 60, learning_rate=1e-3)


def test_saved_model_is_self_contained(tmp_path):
    """Scaling lives inside: the reloaded file alone maps raw 0–255 pixels to the same probabilities."""
    model = models.build("seed_baseline", 96, 112, learning_rate=1e-3)
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 96, 112, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = models.load(path)
    expected = model.predict(pixels, verbose=0)
    assert np.allclose(reloaded.predict(pixels, verbose=0), expected, atol=1e-6)
    assert ((expected >= 0) & (expected <= 1)).all()


def test_predict_resizes_files_to_the_model_input(tmp_path):
    from PIL import Image

    paths = []
    for i, colour in enumerate(("red", "blue")):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (300, 200), colour).save(paths[-1])
    model = models.build("seed_baseline", 96, 112, learning_rate=1e-3)
    probability = models.predict(model, paths, batch_size=1)
    assert probability.shape == (2,)
    assert probability[0] != probability[1]


@pytest.mark.parametrize("content", [None, b"not a keras file"])
def test_loading_a_missing_or_corrupt_model_is_a_clear_error(tmp_path, content):
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match="model.keras"):
        models.load(path)
