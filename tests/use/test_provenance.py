"""valence.use.provenance: metadata embedded in .keras and .tflite files (which Keras and LiteRT still load),
and a model file's identity, with its artifact, version and commit only where HEAD's dvc.lock records it."""
import hashlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml

from helpers import ROOT, save_tiny_model
from valence.errors import PipelineError
from valence.use import provenance
from valence.use.provenance import embed, embedded, identity, source

METADATA = {"trained": "2024-01-02", "params": {"threshold": 0.5}, "note": "ünïcode"}


def copy(path, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.copy(path, folder / path.name)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_two_models_have_two_identities_and_none_of_a_repository(tmp_path, tiny_models):
    (tmp_path / "other").mkdir()
    other = save_tiny_model(tmp_path / "other/model.keras", seed=1)
    first, second = identity(tiny_models[0]), identity(other)
    assert first == {"md5": md5(tiny_models[0]), "file": "model.keras", "embedded": {}}  # no folder, no guesses
    assert second["md5"] == md5(other) != first["md5"]
    assert identity(tiny_models[1])["md5"] == md5(tiny_models[1]) and source(first) == ""


def litert_outputs(path, batch):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return runner(**{next(iter(runner.get_input_details())): batch})


def test_metadata_round_trips_in_a_tflite_file_that_litert_runs_as_before(tmp_path, tiny_models):
    from ai_edge_litert import schema_py_generated as schema

    path = copy(tiny_models[1], tmp_path / "a")
    batch = np.random.default_rng(0).integers(0, 256, (3, 24, 32, 3)).astype("float32")
    before, names = litert_outputs(path, batch), entry_names(path)
    assert embedded(path) == {}
    embed(path, {"first": 1})
    embed(path, METADATA)  # replaces the earlier entry
    assert embedded(path) == METADATA
    after = litert_outputs(path, batch)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert entry_names(path) == names + ["valence"]  # the converter's own entries kept, ours once
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    assert all(model.Buffers(i).DataLength() == 0 or model.Buffers(i)._tab.Vector(4) % 16 == 0
               for i in range(model.BuffersLength()))  # every buffer where TFLite's converter puts it
    fresh = copy(tiny_models[1], tmp_path / "b")
    embed(fresh, dict(reversed(METADATA.items())))
    assert fresh.read_bytes() == path.read_bytes()  # the same metadata, the same bytes


def entry_names(path):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    return [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]


def test_metadata_round_trips_in_a_keras_file_that_keras_still_loads(tmp_path, tiny_models):
    import keras

    path = copy(tiny_models[0], tmp_path / "a")
    assert embedded(path) == {}
    embed(path, {"first": 1})
    embed(path, METADATA)
    assert embedded(path) == METADATA
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(tiny_models[0]) as original:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [i.filename for i in original.infolist()] + ["valence.json"]
        assert infos[-1].date_time == provenance.ZIP_EPOCH and infos[-1].compress_type == infos[0].compress_type
        assert all(archive.read(i.filename) == original.read(i.filename) for i in original.infolist())
    batch = np.random.default_rng(0).integers(0, 256, (3, 24, 32, 3)).astype("float32")
    loaded = keras.saving.load_model(path, safe_mode=True)
    expected = keras.saving.load_model(tiny_models[0], safe_mode=True).predict(batch, verbose=0)
    np.testing.assert_array_equal(loaded.predict(batch, verbose=0), expected)
    fresh = copy(tiny_models[0], tmp_path / "b")
    embed(fresh, METADATA)
    assert fresh.read_bytes() == path.read_bytes()  # byte-deterministic, however many embeds came before


@pytest.mark.parametrize("name, content", [("model.keras", b"not a zip"), ("model.tflite", b"TFL3 garbage" * 9),
                                           ("model.keras", None), ("model.onnx", b"x")])
def test_a_file_without_metadata_or_damaged_gives_none(tmp_path, name, content):
    path = tmp_path / name
    if content is None:  # a zip, but not one embed wrote to
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("valence.json", b"[1, 2]")  # not a dict
    else:
        path.write_bytes(content)
    assert embedded(path) == {}
    assert identity(path)["embedded"] == {}


def test_embed_refuses_what_it_cannot_write_and_leaves_the_file(tmp_path):
    for name, message in (("model.onnx", "cannot embed metadata in this format"),
                          ("model.tflite", "not a TFLite flatbuffer")):
        path = tmp_path / name
        path.write_bytes(b"a model of another kind")
        with pytest.raises(PipelineError, match=message):
            embed(path, METADATA)
        assert path.read_bytes() == b"a model of another kind"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=t@t",
                           "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def lock(md5, size):
    return {"schema": "2.0", "stages": {"train": {"cmd": "python -m stages.train", "outs": [
        {"path": "models/model.keras", "hash": "md5", "md5": md5, "size": size}]}}}


@pytest.fixture
def repository(tmp_path, tiny_models):
    """A git repository with models/model.keras, a dvc.yaml naming it the artifact tiny-classifier, a dvc.lock
    recording its md5, all committed, and tags at HEAD: two versions and a GTO stage tag."""
    repo = tmp_path / "repo"
    model = copy(tiny_models[0], repo / "models")
    (repo / "models/.gitignore").write_text("/model.keras\n")  # DVC's: the file itself is not in git
    (repo / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {"train": {"cmd": "python -m stages.train", "outs": ["models/model.keras"]}},
        "artifacts": {"tiny-classifier": {"path": "models/model.keras", "type": "model"},
                      "other": {"path": "models/other.keras", "type": "model"}}}))
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(md5(model), model.stat().st_size)))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "release")
    git(repo, "tag", "-a", "tiny-classifier@v1.0.0", "-m", "registered")  # GTO's tags are annotated
    git(repo, "tag", "tiny-classifier@v0.9.0")
    git(repo, "tag", "tiny-classifier#prod#1")
    return repo, model


def test_a_model_the_lock_records_names_its_artifact_version_and_commit(repository):
    repo, model = repository
    found = identity(model)
    assert found == {"md5": md5(model), "file": "model.keras", "embedded": {},
                     "revision": git(repo, "rev-parse", "HEAD"), "artifact": "tiny-classifier", "version": "v1.0.0"}
    assert source(found) == "tiny-classifier@v1.0.0"
    git(repo, "commit", "-q", "--allow-empty", "-m", "later")  # the lock still records it; no version tag at HEAD
    later = identity(model)
    assert later["revision"] == git(repo, "rev-parse", "HEAD") and "version" not in later
    assert later["artifact"] == "tiny-classifier" and source(later) == f"git:{later['revision'][:12]}"


def test_a_changed_model_or_a_file_the_lock_does_not_record_gets_no_repository_facts(repository):
    repo, model = repository
    elsewhere = shutil.copy(model, repo / "model.keras")  # the same bytes, at a path the lock does not name
    assert identity(elsewhere) == {"md5": md5(model), "file": "model.keras", "embedded": {}}
    embed(model, METADATA)  # the model changed since the lock: its md5 is not the one recorded
    changed = identity(model)
    assert changed == {"md5": md5(model), "file": "model.keras", "embedded": METADATA} and source(changed) == ""
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(md5(model), model.stat().st_size)))
    assert identity(model) == changed  # a lock not committed: HEAD does not record this file
    git(repo, "commit", "-qam", "the changed model")
    assert identity(model)["revision"] == git(repo, "rev-parse", "HEAD") and "version" not in identity(model)


def test_embedding_and_identity_need_no_tensorflow(tmp_path, tiny_models):
    """The serving box has no TensorFlow: a .tflite file's metadata and identity come without it."""
    path = copy(tiny_models[1], tmp_path)
    code = ("import sys; from valence.use.provenance import embed, identity; "
            f"embed({str(path)!r}, {{'a': 1}}); assert identity({str(path)!r})['embedded'] == {{'a': 1}}; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
