import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, project_params, save_photos
from valence.errors import PipelineError
from valence.use import predict


class MeanBrightness:
    """A stand-in classifier: P(Positive) = mean pixel / 255; records the batches it was given."""
    height, width = 6, 8

    def __init__(self):
        self.batches = []

    def probabilities(self, batch):
        self.batches.append(batch.copy())
        return batch.reshape(len(batch), -1).mean(axis=1) / 255


def grey(path, level, size=(20, 10)):
    Image.new("RGB", size, (level,) * 3).save(path)
    return path


def test_image_files_takes_files_then_folders_recursively_without_hidden_names(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/.cache").mkdir()
    for name in ("a/2.png", "a/b/1.png", "a/10.txt", "a/.hidden.png", "a/.cache/x.png", "single.jpg"):
        (tmp_path / name).write_bytes(b"x")
    files = predict.image_files([tmp_path / "single.jpg", tmp_path / "a"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["single.jpg", "a/10.txt", "a/2.png", "a/b/1.png"]


def test_missing_paths_and_empty_input_are_one_line_errors(tmp_path):
    with pytest.raises(PipelineError, match="nope.jpg: no such file or folder"):
        predict.image_files([tmp_path / "nope.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="no files to predict on in .*empty"):
        predict.image_files([tmp_path / "empty"])


def test_predict_files_batches_labels_and_skips_what_is_not_an_image(tmp_path):
    files = [grey(tmp_path / "dark.png", 51), tmp_path / "notes.txt", grey(tmp_path / "light.png", 204),
             grey(tmp_path / "mid.png", 128)]
    files[1].write_text("not an image")
    model = MeanBrightness()
    rows, skipped = predict.predict_files(model, files, batch_size=2, threshold=0.5)
    assert [(r["path"], r["probability"], r["label"]) for r in rows] == [
        (str(files[0]), 0.2, "Negative"), (str(files[2]), 0.8, "Positive"), (str(files[3]), 0.501961, "Positive")]
    assert skipped == [(str(files[1]), "not an image Pillow can read")]
    assert [b.shape for b in model.batches] == [(1, 6, 8, 3), (2, 6, 8, 3)]  # batches of 2 files, minus the skip
    assert all(b.dtype == np.uint8 for b in model.batches)


def test_flip_average_is_the_mean_over_the_image_and_its_mirror(tmp_path):
    image = np.zeros((6, 8, 3), np.uint8)
    image[:, :4] = 255  # left half white: a classifier of the left half tells the mirror image apart
    Image.fromarray(image).save(tmp_path / "half.png")

    class LeftHalf(MeanBrightness):
        def probabilities(self, batch):
            return batch[:, :, :4].reshape(len(batch), -1).mean(axis=1) / 255

    plain, _ = predict.predict_files(LeftHalf(), [tmp_path / "half.png"])
    averaged, _ = predict.predict_files(LeftHalf(), [tmp_path / "half.png"], flip_average=True)
    assert (plain[0]["probability"], averaged[0]["probability"]) == (1.0, 0.5)


def run_cli(*args, cwd, params=True):
    """`python -m valence …` in ``cwd``, with the project's params.yaml there unless ``params`` is False."""
    if params:
        (cwd / "params.yaml").write_text(project_params({}))
    return subprocess.run([sys.executable, "-m", "valence", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def tiny_model(tiny_models):
    return tiny_models[0]


def test_cli_writes_one_row_per_image_and_lists_the_skipped(tmp_path, tiny_model):
    photos = save_photos(tmp_path / "photos/deeper", 3)
    (tmp_path / "photos/readme.txt").write_text("hello")
    result = run_cli("predict", tmp_path / "photos", "--model", tiny_model, "--out", "out.csv", "--no-flip-average",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 of 4 files:" in result.stderr and "readme.txt: not an image Pillow can read" in result.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [r["path"] for r in rows] == [str(p) for p in photos]
    from valence.data.images import load_images
    from valence.use.classifier import open_classifier

    model = open_classifier(tiny_model)
    expected = model.probabilities(load_images(photos, 24, 32))
    assert np.allclose([float(r["probability"]) for r in rows], expected, atol=1e-5)
    assert [r["label"] for r in rows] == ["Positive" if p >= 0.5 else "Negative" for p in expected]


@pytest.mark.parametrize("make, args, message", [
    (lambda d: (d / "empty").mkdir(), ["empty"], "error: no files to predict on in empty"),
    (lambda d: (d / "notes.txt").write_text("x"), ["notes.txt"], "error: none of the 1 files is an image"),
    (lambda d: None, ["missing.png"], "error: missing.png: no such file or folder"),
    (lambda d: save_photos(d, 1), ["0.png", "--model", "nope.keras"], "error: nope.keras: model file not found"),
    (lambda d: save_photos(d, 1), ["0.png", "--threshold", "2"], "error: --threshold must be between 0 and 1"),
    (lambda d: save_photos(d, 1), ["0.png"], "no params"),
])
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, tiny_model, make, args, message):
    make(tmp_path)
    if "--model" not in args:
        args = [*args, "--model", tiny_model]
    result = run_cli("predict", *args, "--out", "out.csv", cwd=tmp_path, params=message != "no params")
    if message == "no params":  # outside the project's folder: evaluate's threshold and flip averaging are unknown
        message = "error: params.yaml: not found; run from the project's folder"
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.csv").exists()
