"""`valence predict --scheduler`'s parts folder without a cluster: whose folder it is, what counts as a finished
part on resume, what is removed at the end. The cluster itself: test_predict_cluster.py (slow)."""
import contextlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import environment, free_port, project_params, save_photos
from valence.errors import PipelineError
from valence.files import write_json
from valence.use import predict_cluster
from valence.use.predict import predict_files


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_folder_of_that_name_without_our_recipe_is_refused_and_left_alone(tmp_path):
    parts = tmp_path / "predictions.csv.parts"
    wanted = predict_cluster.recipe("abc", ["a.png", "b.png"], 0.5, True, 20)
    assert predict_cluster.open_parts(parts, wanted) is False  # nothing there yet: a fresh run
    parts.mkdir()
    (parts / "0.csv").write_text("the user's own file\n")
    with pytest.raises(PipelineError, match=r"predictions.csv.parts: not a parts folder of valence predict \(no "
                                            r"recipe.json\), so it is left alone: move it, or use another --out$"):
        predict_cluster.open_parts(parts, wanted)
    write_json(parts / "recipe.json", {k: v for k, v in wanted.items() if k != "made_by"})  # not our mark
    with pytest.raises(PipelineError, match=r"recipe.json: not a recipe of valence predict \(no made_by mark\)"):
        predict_cluster.open_parts(parts, wanted)
    predict_cluster.finish(parts)  # never removes what it did not make
    assert sorted(contents(parts)) == ["0.csv", "recipe.json"]
    assert (parts / "0.csv").read_text() == "the user's own file\n"


@pytest.mark.parametrize("text, message", [
    ("{not json", r"recipe.json: unreadable \(Expecting property name"),
    ('["a list"]', r"recipe.json: not a recipe of valence predict"),
    ('{"made_by": "valence predict", "model": "abc", "files": 3}', r"recipe.json: damaged \(its files, images, "
                                                                   r"threshold, uncertain_band, flip_average, shard_size missing"),
])
def test_a_damaged_recipe_is_one_line(tmp_path, text, message):
    parts = tmp_path / "p.csv.parts"
    parts.mkdir()
    (parts / "recipe.json").write_text(text)
    with pytest.raises(PipelineError, match=message) as err:
        predict_cluster.open_parts(parts, predict_cluster.recipe("abc", ["a.png"], 0.5, True, 20))
    assert "\n" not in str(err.value) and str(parts) in str(err.value)


def test_parts_of_another_run_are_an_error_not_a_mix(tmp_path):
    parts = tmp_path / "predictions.csv.parts"
    wanted = predict_cluster.recipe("abc", ["a.png", "b.png"], 0.5, True, 20)
    predict_cluster.make_parts(parts, wanted)
    assert predict_cluster.open_parts(parts, wanted) is True
    assert json.loads((parts / "recipe.json").read_text())["made_by"] == "valence predict"
    with pytest.raises(PipelineError, match=r"predictions.csv.parts: parts of another run \(its model, threshold "):
        predict_cluster.open_parts(parts, dict(wanted, model="def", threshold=0.6))
    with pytest.raises(PipelineError, match=r"parts of another run \(its files, images differ\)"):
        predict_cluster.open_parts(parts, predict_cluster.recipe("abc", ["a.png", "b.png", "c.png"], 0.5, True, 20))


class MeanBrightness:
    """A stand-in classifier: P(Positive) = mean pixel / 255."""
    height, width, ratings, photo_check = 6, 8, {}, False

    def scores(self, batch):
        return {"probability": batch.reshape(len(batch), -1).mean(axis=1) / 255}


@pytest.fixture
def shard(tmp_path):
    """A written part 0 of three photos and a text file, and what it was made from: (parts, paths, stamps)."""
    paths = [str(p) for p in save_photos(tmp_path / "photos", 3)]
    (tmp_path / "photos/notes.txt").write_text("not a photo")
    paths.append(str(tmp_path / "photos/notes.txt"))
    parts = tmp_path / "p.csv.parts"
    predict_cluster.make_parts(parts, predict_cluster.recipe("abc", paths, 0.5, False, 4))
    marks = predict_cluster.stamps(paths)
    predict_cluster.write_part(parts, 0, *predict_files(MeanBrightness(), paths, progress=False), marks)
    return parts, paths, marks


def test_a_written_part_reads_back_as_done(shard):
    parts, paths, marks = shard
    (rows, skipped), why = predict_cluster.read_part(parts, 0, paths, marks)
    assert why is None and [r["path"] for r in rows] == paths[:3] and skipped == [(paths[3], "not an image Pillow "
                                                                                           "can read")]
    assert rows[0]["probability"] == str(predict_files(MeanBrightness(), paths[:1])[0][0]["probability"])
    assert predict_cluster.read_part(parts, 1, paths, marks) == (None, None)  # never written: nothing to say
    size, mtime = marks[0]
    assert (size, mtime) == (os.stat(paths[0]).st_size, os.stat(paths[0]).st_mtime_ns)
    assert predict_cluster.stamp(str(parts / "gone.png")) is None


def forge(parts, paths, i=0):
    """Part ``i`` rewritten as a consistent part (manifest and all) of other photos than ``paths``."""
    others = [p.replace("/photos/", "/elsewhere/") for p in paths]
    rows = [{"path": p, "probability": 0.5, "label": "Positive"} for p in others[:-1]]
    predict_cluster.write_part(parts, i, rows, [(others[-1], "not an image")], [[1, 2]] * len(paths))


def truncate(parts, paths):
    data = (parts / "0.csv").read_bytes()
    (parts / "0.csv").write_bytes(data[:len(data) // 2])


def edit_photo(parts, paths):
    Image.fromarray(np.zeros((20, 10, 3), np.uint8)).save(paths[1])  # other pixels: other size and mtime


@pytest.mark.parametrize("change, why", [
    (forge, r"rows do not match its shard \(4 of its photos missing, first .*/photos/0.png; 4 paths not in it, "
            r"first .*/elsewhere/0.png\)"),
    (truncate, r"its CSVs are not the ones its manifest describes \(truncated or edited\)"),
    (edit_photo, r".*/photos/1.png changed since it was scored"),
    (lambda parts, paths: (parts / "0.json").unlink(), r"no 0.json \(a run stopped while writing it"),
    (lambda parts, paths: (parts / "0.json").write_text("[]"), r"0.json is not a manifest of valence predict"),
    (lambda parts, paths: (parts / "0.json").write_text("{"), r"0.json is not JSON \(Expecting property name"),
])
def test_a_part_that_does_not_match_its_shard_is_not_done(shard, change, why):
    parts, paths, _ = shard
    change(parts, paths)
    found, reason = predict_cluster.read_part(parts, 0, paths, predict_cluster.stamps(paths))
    assert found is None and reason is not None and re.match(why, reason), reason


def test_a_bare_csv_no_longer_counts_as_a_finished_shard(tmp_path):
    """Before manifests any <digit>.csv was a finished shard: a header alone made its photos vanish."""
    parts = tmp_path / "p.csv.parts"
    parts.mkdir()
    (parts / "0.csv").write_text("path,probability,label\n")
    assert predict_cluster.read_part(parts, 0, ["a.png"], [[1, 2]])[0] is None


def test_finish_removes_only_what_it_wrote(shard):
    parts, _, _ = shard
    (parts / ".0.csv.abc123.tmp").write_text("what a killed write left")
    predict_cluster.finish(parts)
    assert not parts.exists()  # the recipe, the part, its manifest and a leftover of ours: nothing else was there
    predict_cluster.make_parts(parts, predict_cluster.recipe("abc", ["a.png"], 0.5, False, 4))
    (parts / "0.csv").write_text("ours by name")
    (parts / "notes.txt").write_text("the user's, put here meanwhile")
    (parts / "7.csv").write_text("no shard 7 in this run")
    predict_cluster.finish(parts)
    assert contents(parts) == {"7.csv": b"no shard 7 in this run", "notes.txt": b"the user's, put here meanwhile"}


class FakeShardMap:
    """cluster.ShardMap run here, one shard after another, with the stand-in classifier; records what it scored."""
    scored = []

    def __init__(self, client, function, shards, *args):
        self.shards, self.retried = shards, 0

    def __iter__(self):
        for k, paths in enumerate(self.shards):
            FakeShardMap.scored.append(paths)
            yield k, predict_files(MeanBrightness(), paths, progress=False)


@pytest.fixture
def no_cluster(monkeypatch):
    from valence import cluster

    monkeypatch.setattr(cluster, "session", lambda address: contextlib.nullcontext())
    monkeypatch.setattr(cluster, "send_model", lambda client, path: None)
    monkeypatch.setattr(cluster, "ShardMap", FakeShardMap)
    FakeShardMap.scored = []
    return FakeShardMap.scored


def test_resume_scores_again_exactly_the_parts_that_do_not_match(tmp_path, no_cluster, capsys):
    """Five shards of two: after a full run, part 1 is forged, part 2 truncated, a photo of part 3 edited; the run
    again scores those three, says why for each, and gives what a fresh in-process run gives."""
    folder = tmp_path / "photos"
    paths = [str(p) for p in save_photos(folder, 10)]
    (tmp_path / "model.tflite").write_bytes(b"a model")
    run = ("local:2", tmp_path / "model.tflite", paths, tmp_path / "p.csv", 4, 0.5, False, 2)
    batches, _, _, parts = predict_cluster.predict_on_cluster(*run)
    first = [r for rows, _ in batches for r in rows]  # read back from the parts, shard after shard
    assert len(no_cluster) == 5 and len(first) == 10
    forge(parts, paths[2:4], 1)
    data = (parts / "2.csv").read_bytes()
    (parts / "2.csv").write_bytes(data[:-5])
    Image.fromarray(np.full((30, 40, 3), 250, np.uint8)).save(paths[7])  # part 3: brighter, other size
    no_cluster.clear()
    capsys.readouterr()
    batches, skipped, _, _ = predict_cluster.predict_on_cluster(*run)
    rows = [r for rows, _ in batches for r in rows]
    err = capsys.readouterr().err
    assert [sorted(s) for s in no_cluster] == [sorted(str(folder.resolve() / f"{i}.png") for i in pair)
                                               for pair in ((2, 3), (4, 5), (6, 7))]
    assert "part 1: rows do not match its shard (2 of its photos missing" in err
    assert "part 2: its CSVs are not the ones its manifest describes (truncated or edited); scoring it again" in err
    assert f"part 3: {paths[7]} changed since it was scored; scoring it again" in err
    fresh, _ = predict_files(MeanBrightness(), paths, progress=False)
    assert [(r["path"], str(r["probability"]), r["label"]) for r in rows] == [
        (r["path"], str(r["probability"]), r["label"]) for r in fresh]
    assert rows[7]["probability"] != first[7]["probability"] and skipped == []


def test_cli_refuses_a_users_parts_folder_before_any_cluster(tmp_path, tiny_models):
    """`--scheduler` with <out>.parts already there and not ours: one line, before connecting (nothing listens
    at the address), the folder as it was."""
    save_photos(tmp_path / "photos", 2)
    (tmp_path / "params.yaml").write_text(project_params({}))
    parts = tmp_path / "p.csv.parts"
    parts.mkdir()
    (parts / "mine.txt").write_text("the user's")
    result = subprocess.run([sys.executable, "-m", "valence", "predict", "photos", "--out", "p.csv", "--model",
                             str(tiny_models[1]), "--scheduler", f"tcp://127.0.0.1:{free_port()}"], cwd=tmp_path,
                            env=environment(), capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        "error: p.csv.parts: not a parts folder of valence predict (no recipe.json), so it is left alone: move it, "
        "or use another --out"), result.stderr
    assert contents(parts) == {"mine.txt": b"the user's"} and not (tmp_path / "p.csv").exists()


def test_a_parts_folder_inside_the_photos_folder_is_not_read_as_photos(tmp_path):
    """`predict photos/ --out photos/p.csv --scheduler …` after a crash: its own parts are not inputs of the
    resumed run (else the file list, and with it the recipe, would differ)."""
    from valence.__main__ import without_files_under

    save_photos(tmp_path / "photos", 2)
    parts = tmp_path / "photos" / "p.csv.parts"
    parts.mkdir()
    (parts / "0.csv").write_text("path,probability,label\n")
    (tmp_path / "photos" / "p.csv.partsx.png").write_bytes(b"a photo of its own")  # a name that only starts alike
    files = sorted(f for f in (tmp_path / "photos").rglob("*") if f.is_file())
    kept = without_files_under(files, parts)
    assert parts / "0.csv" in files and parts / "0.csv" not in kept
    assert kept == [f for f in files if f.parent != parts] and len(kept) == 3
