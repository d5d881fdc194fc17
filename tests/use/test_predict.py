import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, free_port, project_params, repo_params, s3_environment, s3_server, save_photos
import valence
from valence.data.labels import label_of
from valence.errors import PipelineError
from valence.use import predict

MODEL = ["model_md5", "model_source"]  # last in every row: the model that gave it


class MeanBrightness:
    """A stand-in classifier: P(Positive) = mean pixel / 255, no ratings; records the batches it was given."""
    height, width, ratings, photo_check = 6, 8, {}, False

    def scores(self, batch):
        return {"probability": self.probabilities(batch)}

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


def run_cli(*args, cwd, params=True, env=None):
    """`python -m valence …` in ``cwd``, with the project's params.yaml there unless ``params`` is False."""
    if params:
        (cwd / "params.yaml").write_text(project_params({}))
    return subprocess.run([sys.executable, "-m", "valence", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})})


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
    band = repo_params("evaluate").uncertain_band  # the project's params.yaml: Uncertain near the threshold
    assert [r["label"] for r in rows] == [label_of(p, 0.5, band) for p in expected]
    md5 = hashlib.md5(Path(tiny_model).read_bytes()).hexdigest()
    assert {(r["model_md5"], r["model_source"]) for r in rows} == {(md5, "")}  # a model outside any repository


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
    assert not (tmp_path / "out.csv.json").exists() and not list(tmp_path.glob(".out.csv*"))


@pytest.fixture
def bucket(monkeypatch, tmp_path):
    """A local S3 server whose bucket "photos" holds set/0.png … set/2.png, set/deeper/0.png, a hidden
    set/.cache/x.png and set/notes.txt; this process reads it through the AWS_* variables. Returns
    (environment, the photos as local files, in listing order)."""
    import boto3
    import s3fs

    with s3_server("photos") as endpoint:
        env = s3_environment(endpoint)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()  # a file system made for another test's endpoint is cached
        local = save_photos(tmp_path / "set", 3) + save_photos(tmp_path / "set/deeper", 1, seed=1)
        client = boto3.client("s3")
        for path in local:
            client.upload_file(str(path), "photos", path.relative_to(tmp_path).as_posix())
        client.upload_file(str(local[0]), "photos", "set/.cache/x.png")
        client.put_object(Bucket="photos", Key="set/notes.txt", Body=b"not a photo")
        yield env, local
        s3fs.S3FileSystem.clear_instance_cache()


def test_s3_urls_are_listed_like_folders_and_read_like_files(bucket):
    _, local = bucket
    files = predict.image_files(["s3://photos/set/", "s3://photos/set/1.png"])
    assert files == ["s3://photos/set/0.png", "s3://photos/set/1.png", "s3://photos/set/2.png",
                     "s3://photos/set/deeper/0.png", "s3://photos/set/notes.txt", "s3://photos/set/1.png"]
    model = MeanBrightness()
    rows, skipped = predict.predict_files(model, files, batch_size=4)
    expected, _ = predict.predict_files(MeanBrightness(), local + [local[1]], batch_size=4)
    assert [r["probability"] for r in rows] == [r["probability"] for r in expected]
    assert [r["path"] for r in rows] == [f for f in files if not f.endswith(".txt")]
    assert skipped == [("s3://photos/set/notes.txt", "not an image Pillow can read")]


def test_an_object_that_cannot_be_read_is_skipped_with_the_reason(bucket, monkeypatch):
    import boto3
    import s3fs

    files = predict.image_files(["s3://photos/set"])
    boto3.client("s3").delete_object(Bucket="photos", Key="set/2.png")
    rows, skipped = predict.predict_files(MeanBrightness(), files)
    assert len(rows) == 3 and skipped[0] == ("s3://photos/set/2.png", "no such object (deleted since it was listed?)")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    s3fs.S3FileSystem.clear_instance_cache()
    rows, skipped = predict.predict_files(MeanBrightness(), files[:1])
    assert rows == [] and skipped[0][1].startswith("cannot read it (EndpointConnectionError: Could not connect")
    with pytest.raises(PipelineError, match=r"^s3://photos/set: cannot list it \(Could not connect to the endpoint"):
        predict.image_files(["s3://photos/set"])


def test_cli_predicts_on_s3_and_names_what_is_not_there(bucket, tmp_path, tiny_model):
    env, local = bucket
    result = run_cli("predict", "s3://photos/set", "--model", tiny_model, "--out", "s3.csv", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "s3://photos/set/notes.txt: not an image Pillow can read" in result.stderr
    assert run_cli("predict", *local, "--model", tiny_model, "--out", "local.csv", cwd=tmp_path).returncode == 0
    s3_rows = list(csv.DictReader((tmp_path / "s3.csv").open()))
    local_rows = list(csv.DictReader((tmp_path / "local.csv").open()))
    assert [r["path"] for r in s3_rows] == ["s3://photos/set/0.png", "s3://photos/set/1.png",
                                            "s3://photos/set/2.png", "s3://photos/set/deeper/0.png"]
    assert [(r["probability"], r["label"]) for r in s3_rows] == [(r["probability"], r["label"]) for r in local_rows]
    result = run_cli("predict", "s3://photos/nothing-here", "--model", tiny_model, "--out", "x.csv", cwd=tmp_path,
                     env=env)
    assert result.returncode == 1 and result.stderr.strip() == "error: s3://photos/nothing-here: no such file or folder"


def test_predict_writes_the_ratings_a_model_learnt_and_none_it_did_not(tmp_path, tiny_rating_models, tiny_model):
    photos = save_photos(tmp_path / "photos", 4)
    for model in tiny_rating_models[:2]:
        result = run_cli("predict", tmp_path / "photos", "--model", model, "--out", "rated.csv", "--force",
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "ratings: valence on 1–7, arousal on 1–7 (the training raters' scale)" in result.stdout
        rows = list(csv.DictReader((tmp_path / "rated.csv").open()))
        assert list(rows[0]) == ["path", "probability", "label", "valence", "arousal", *MODEL]
        from valence.data.images import load_images
        from valence.use.classifier import open_classifier

        scores = open_classifier(model).scores(load_images(photos, 24, 32))
        mirrored = open_classifier(model).scores(load_images(photos, 24, 32)[:, :, ::-1])
        for name in ("valence", "arousal"):  # flip-averaged, as P(Positive) is (the project's params)
            expected = (scores[name] + mirrored[name]) / 2
            assert np.allclose([float(r[name]) for r in rows], expected, atol=2e-4)
            assert all(1 <= float(r[name]) <= 7 for r in rows)
    result = run_cli("predict", tmp_path / "photos", "--model", tiny_model, "--out", "plain.csv", cwd=tmp_path)
    assert result.returncode == 0 and "ratings:" not in result.stdout
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == "path,probability,label,model_md5,model_source"


def test_predict_flags_what_the_photo_check_rejects_and_an_older_model_says_it_has_none(tmp_path, tiny_checked_models,
                                                                                         tiny_model):
    """A model with a photo check writes photo_score (its "photo" output, flip-averaged) and photo (no below 0.5);
    the summary counts them; a model without one writes neither column and says so once, on stderr."""
    (tmp_path / "photos").mkdir()
    for name, level in (("dark.png", 40), ("bright.png", 220)):
        Image.fromarray(np.full((24, 32, 3), level, np.uint8)).save(tmp_path / "photos" / name)
    from valence.use.classifier import open_classifier

    for model in tiny_checked_models:
        result = run_cli("predict", tmp_path / "photos", "--model", model, "--out", "checked.csv", "--force",
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        rows = {Path(r["path"]).name: r for r in csv.DictReader((tmp_path / "checked.csv").open())}
        assert list(rows["dark.png"]) == ["path", "probability", "label", "valence", "arousal", "photo_score", "photo",
                                          *MODEL]
        classifier = open_classifier(model)
        assert classifier.photo_check
        for name, row in rows.items():
            pixels = np.asarray(Image.open(tmp_path / "photos" / name))[None]
            expected = (classifier.scores(pixels)["photo"] + classifier.scores(pixels[:, :, ::-1])["photo"]) / 2
            assert float(row["photo_score"]) == pytest.approx(float(expected[0]), abs=2e-4)
            assert row["photo"] == ("yes" if float(row["photo_score"]) >= 0.5 else "no")
        assert (rows["dark.png"]["photo"], rows["bright.png"]["photo"]) == ("yes", "no")
        assert "1 do not look like photos: photo = no" in result.stdout and "no photo check" not in result.stderr
    result = run_cli("predict", tmp_path / "photos", "--model", tiny_model, "--out", "old.csv", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr.count("has no photo check") == 1
    assert (tmp_path / "old.csv").read_text().splitlines()[0] == "path,probability,label,model_md5,model_source"


@pytest.mark.parametrize("out, inputs, message", [
    ("photos/0.png", ["photos/0.png"], "photos/0.png: --out would replace the input file photos/0.png"),
    ("photos/0.png", ["photos"], "photos/0.png: --out would replace a file in the input folder photos"),
    ("photos/deeper/.old.csv", ["photos"],
     "photos/deeper/.old.csv: --out would replace a file in the input folder photos"),
])
@pytest.mark.parametrize("force", [False, True])  # --force never reaches the inputs
def test_predict_never_writes_over_its_inputs(tmp_path, out, inputs, message, force):
    photos = save_photos(tmp_path / "photos", 2)
    (tmp_path / "photos/deeper").mkdir()
    (tmp_path / "photos/deeper/.old.csv").write_text("the user's own file")
    before = {p: p.read_bytes() for p in (*photos, tmp_path / "photos/deeper/.old.csv")}
    # a missing model: refused before the model loads (or any photo is read)
    result = run_cli("predict", *inputs, "--out", out, "--model", "nope.keras", *(["--force"] if force else []),
                     cwd=tmp_path)
    assert result.returncode == 1 and result.stderr == f"error: {message}; choose another --out\n", result.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_predict_replaces_an_existing_out_only_with_force(tmp_path, tiny_model):
    save_photos(tmp_path / "photos", 2)
    (tmp_path / "out.csv").write_text("a CSV of another day")
    result = run_cli("predict", "photos", "--out", "out.csv", "--model", "nope.keras", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr == "error: out.csv: already exists; add --force to replace it\n"
    assert (tmp_path / "out.csv").read_text() == "a CSV of another day"
    result = run_cli("predict", "photos", "--out", "out.csv", "--model", tiny_model, "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in csv.DictReader((tmp_path / "out.csv").open())] == ["photos/0.png", "photos/1.png"]
    (tmp_path / "folder").mkdir()
    result = run_cli("predict", "photos", "--out", "folder", "--model", tiny_model, "--force", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr == "error: folder: a folder; --out names the CSV file to write\n"


def test_predict_replaces_an_existing_sidecar_only_with_force(tmp_path, tiny_model):
    save_photos(tmp_path / "photos", 2)
    (tmp_path / "out.csv.json").write_text("the user's notes")
    result = run_cli("predict", "photos", "--out", "out.csv", "--model", tiny_model, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: out.csv.json: already exists; add --force to replace it\n"
    assert (tmp_path / "out.csv.json").read_text() == "the user's notes" and not (tmp_path / "out.csv").exists()
    result = run_cli("predict", "photos", "--out", "out.csv", "--model", tiny_model, "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.csv.json").read_text())["counts"]["scored"] == 2
    (tmp_path / "photos/new.csv.json").write_text("{}")  # --out is new, its sidecar would replace an input
    result = run_cli("predict", "photos", "--out", "photos/new.csv", "--model", tiny_model, "--force", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr == ("error: photos/new.csv.json: --out would replace a file in the "
                                                         "input folder photos; choose another --out\n"), result.stderr


def photo_set(folder):
    """Noise photos, a dark and a bright one (the checked model's photo check passes the dark, rejects the bright),
    and two files that are not images: what the CSV, Parquet and sidecar tests predict on."""
    save_photos(folder, 5)
    for name, level in (("dark.png", 40), ("bright.png", 220)):
        Image.fromarray(np.full((24, 32, 3), level, np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "cut.png").write_bytes((folder / "0.png").read_bytes()[:60])
    return folder


def test_csv_and_parquet_of_the_same_photos_hold_the_same_values(tmp_path, tiny_checked_models):
    import pyarrow as pa
    import pyarrow.parquet as pq

    photo_set(tmp_path / "photos")
    model = tiny_checked_models[1]
    for out in ("p.csv", "p.parquet"):
        result = run_cli("predict", "photos", "--model", model, "--out", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    table = pq.read_table(tmp_path / "p.parquet")
    texts = ["path", "label", "photo", *MODEL]
    assert table.column_names == list(rows[0]) == ["path", "probability", "label", "valence", "arousal",
                                                   "photo_score", "photo", *MODEL]
    assert {f.name: f.type for f in table.schema} == {name: pa.string() if name in texts else pa.float64()
                                                      for name in table.column_names}
    assert table.num_rows == len(rows) == 7
    for name in table.column_names:
        cast = str if name in texts else float
        assert table.column(name).to_pylist() == [cast(r[name]) for r in rows], name
    assert set(table.column("photo").to_pylist()) == {"yes", "no"}
    assert set(table.column("model_md5").to_pylist()) == {hashlib.md5(Path(model).read_bytes()).hexdigest()}
    assert json.loads((tmp_path / "p.parquet.json").read_text())["format"] == "parquet"


def test_the_sidecar_names_the_model_and_settings_and_counts_the_rows(tmp_path, tiny_checked_models):
    from collections import Counter
    from datetime import datetime

    from valence.use.provenance import identity

    photo_set(tmp_path / "photos")
    result = run_cli("predict", "photos", "--model", tiny_checked_models[1], "--out", "p.csv", "--threshold", "0.6",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    sidecar = json.loads((tmp_path / "p.csv.json").read_text())
    assert sidecar["counts"] == {"scored": len(rows), "skipped": 2, "not_photos": sum(r["photo"] == "no" for r in rows),
                                 "labels": dict(Counter(r["label"] for r in rows))}
    assert sidecar["counts"]["not_photos"] >= 1 and sum(sidecar["counts"]["labels"].values()) == 7
    assert sidecar["model"] == identity(tiny_checked_models[1]) and sidecar["model"]["md5"] == rows[0]["model_md5"]
    assert (sidecar["threshold"], sidecar["flip_average"], sidecar["uncertain_band"]) == (
        0.6, True, repo_params("evaluate").uncertain_band)
    assert (sidecar["out"], sidecar["format"]) == ("p.csv", "csv")
    assert sidecar["package_version"] == valence.__version__  # from the source: the serving image installs none
    started, finished = (datetime.fromisoformat(sidecar[k]) for k in ("started", "finished"))
    assert started.utcoffset().total_seconds() == 0 and started <= finished
    assert "p.csv.json" in result.stdout


def test_parquet_is_written_a_row_group_at_a_time_as_the_batches_come(tmp_path, monkeypatch):
    """With row groups of 2 and batches of 2 files, the first groups are in the temporary file before the last
    batch is scored, and the file appears under its name only at the end."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(predict, "ROW_GROUP", 2)
    files = [grey(tmp_path / f"{i}.png", 40 * i) for i in range(5)]
    out, seen = tmp_path / "p.parquet", []

    def batches():
        for n, batch in enumerate(predict.predict_batches(MeanBrightness(), files, batch_size=2, progress=False)):
            temporary = list(tmp_path.glob(".p.parquet.*.tmp"))
            seen.append((out.exists(), len(temporary), temporary[0].stat().st_size if temporary else 0))
            yield batch

    counts, skipped = predict.write_predictions(out, batches(), {"md5": "0" * 32, "file": "m.tflite", "embedded": {}})
    assert [exists for exists, _, _ in seen] == [False] * 3 and [n for _, n, _ in seen] == [0, 1, 1]
    assert seen[2][2] > seen[1][2] > 0  # the groups went to disk as they filled
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_row_groups == 3 and parquet.metadata.num_rows == 5
    assert parquet.read().column("probability").to_pylist() == [r["probability"] for r in
                                                                 predict.predict_files(MeanBrightness(), files)[0]]
    assert counts == {"scored": 5, "skipped": 0, "not_photos": 0, "labels": {"Negative": 4, "Positive": 1}}
    assert skipped == [] and not list(tmp_path.glob(".p.parquet.*"))


def test_parquet_without_pyarrow_is_one_line_before_any_work(tmp_path, monkeypatch, tiny_model):
    from valence.__main__ import main

    save_photos(tmp_path / "photos", 1)
    (tmp_path / "params.yaml").write_text(project_params({}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow… raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(PipelineError) as err:
        main(["predict", "photos", "--out", "p.parquet", "--model", str(tiny_model)])
    assert str(err.value) == "writing Parquet needs pyarrow (pip install -r requirements.txt)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "photos"]


def test_photos_near_the_threshold_are_uncertain_and_counted(tmp_path, tiny_model):
    """--uncertain-band: a probability less than it from the threshold is labelled Uncertain, in the rows, the
    sidecar's counts and the summary line; 0 labels every photo."""
    save_photos(tmp_path / "photos", 6)
    labels = {}
    for band in ("0", "0.45"):
        out = f"band{band}.csv"
        result = run_cli("predict", "photos", "--model", tiny_model, "--out", out, "--uncertain-band", band,
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader((tmp_path / out).open()))
        labels[band] = [r["label"] for r in rows]
        assert labels[band] == [label_of(float(r["probability"]), 0.5, float(band)) for r in rows]
        sidecar = json.loads((tmp_path / f"{out}.json").read_text())
        assert sidecar["uncertain_band"] == float(band)
        uncertain = labels[band].count("Uncertain")
        assert sidecar["counts"]["labels"].get("Uncertain", 0) == uncertain
        assert (f"{uncertain} Uncertain" in result.stdout) == bool(uncertain), result.stdout
    assert "Uncertain" not in labels["0"] and labels["0.45"].count("Uncertain") >= 1
    assert all(a == b for a, b in zip(labels["0"], labels["0.45"]) if b != "Uncertain")  # the rest unchanged
    refused = run_cli("predict", "photos", "--model", tiny_model, "--out", "x.csv", "--uncertain-band", "0.5",
                      cwd=tmp_path)
    assert refused.returncode != 0 and "error: --uncertain-band must be in [0, 0.5), got 0.5" in refused.stderr


def test_the_summary_names_the_valence_that_trained_the_model_and_the_one_that_scored(tmp_path, tiny_models):
    import shutil

    from valence.use.provenance import embed

    photo_set(tmp_path / "photos")
    recorded = shutil.copy(tiny_models[1], tmp_path / "recorded.tflite")
    embed(recorded, {"made_by": "valence train", "valence_version": "0.1.9"})
    for model, made_by in ((tiny_models[1], "made by valence: version not recorded"),
                           (recorded, "made by valence 0.1.9")):
        result = run_cli("predict", "photos", "--model", model, "--out", "p.csv", "--force", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"{made_by}), scored by valence {valence.__version__};" in result.stdout
