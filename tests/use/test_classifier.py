import hashlib
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, repo_params
from valence.errors import PipelineError
from valence.learn import models
from valence.use import classifier


@pytest.fixture
def tiny(tiny_models):
    return tiny_models


def pixels(n, height=24, width=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_keras_and_litert_give_the_same_probabilities(tiny):
    keras_model, litert_model = (classifier.open_classifier(path) for path in tiny)
    assert (keras_model.height, keras_model.width) == (litert_model.height, litert_model.width) == (24, 32)
    for n in (5, 1, 5):  # the LiteRT batch dimension is resized between calls
        batch = pixels(n, seed=n)
        expected = keras_model.model.predict(batch.astype("float32"), verbose=0).reshape(-1)
        assert np.allclose(keras_model.probabilities(batch), expected, atol=1e-6)
        assert np.allclose(litert_model.probabilities(batch), expected, atol=1e-5)
    assert len(set(np.round(expected, 6))) > 1  # different images, different probabilities


def test_version_is_the_files_md5_as_dvc_records_it(tiny):
    for path in tiny:
        assert classifier.open_classifier(path).version == hashlib.md5(path.read_bytes()).hexdigest()


def test_litert_runs_without_tensorflow(tiny):
    code = ("import sys; from valence.use.classifier import open_classifier; import numpy as np; "
            f"c = open_classifier({str(tiny[1])!r}); print(c.probabilities(np.zeros((2, 24, 32, 3), np.uint8))); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name, content, message", [
    ("model.onnx", b"x", "unknown model format; expected one of .keras, .tflite"),
    ("missing.tflite", None, "model file not found; run `dvc repro export`"),
    ("missing.keras", None, "model file not found; run `dvc repro train`"),
    ("model.tflite", b"not a flatbuffer at all", "cannot load the LiteRT model"),
    ("model.keras", b"not a zip", "cannot load the model"),
])
def test_bad_model_files_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=message) as err:
        classifier.open_classifier(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_keras_model_scores_files_at_its_input_size_and_flip_averages(tmp_path):
    """evaluate's path: files resized to the model's input, scored in batches, the mirror image averaged in."""
    from PIL import Image, ImageOps

    from valence.data.images import load_images
    from valence.use.predict import score_batches

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    image.save(tmp_path / "photo.png")
    ImageOps.mirror(image).save(tmp_path / "mirror.png")
    model = classifier.KerasClassifier(models.build(repo_params("train").using("seed_baseline", image_height=96,
                                                                               image_width=112)))
    pixels = load_images([tmp_path / "photo.png", tmp_path / "mirror.png"], model.height, model.width)
    assert pixels.shape == (2, 96, 112, 3)
    plain, mirrored = score_batches(model, pixels, batch_size=1)
    assert plain != mirrored  # an untrained network does not see the two alike
    averaged = score_batches(model, pixels, batch_size=2, flip_average=True)
    assert np.allclose(averaged, (plain + mirrored) / 2, atol=1e-6)


def test_a_model_with_rating_heads_gives_each_rating_on_its_scale(tiny_rating_models, tiny):
    from valence.learn import heads as learn_heads, models as learn_models

    keras_path, litert_path, heads = tiny_rating_models
    batch = pixels(6, seed=3)
    extractor, _ = learn_heads.of_last_unit(learn_models.load(tiny[0]), "probability")
    features = np.asarray(extractor(batch.astype("float32")))
    plain = classifier.open_classifier(tiny[0]).probabilities(batch)
    for path in (keras_path, litert_path):
        rated = classifier.open_classifier(path)
        assert rated.ratings == {"valence": (1.0, 7.0), "arousal": (1.0, 7.0)}
        scores = rated.scores(batch)
        assert sorted(scores) == ["arousal", "probability", "valence"]
        np.testing.assert_allclose(scores["probability"], plain, atol=1e-5)  # P(Positive) as without the heads
        for name, head in heads.items():
            expected = np.clip(head.logit(features), 1, 7)  # the ridge on the features, kept on its scale
            np.testing.assert_allclose(scores[name], expected, atol=1e-3)
        assert scores["valence"].std() > 0.01  # the photos differ
    assert classifier.open_classifier(tiny[1]).ratings == {}
