import hashlib
import json

import pytest

from valence.errors import PipelineError
from valence.files import (UMASK, atomic_dir, atomic_path, digest_of, read_csv, refuse_replacing_inputs,
                           write_csv, write_json)


class Boom(Exception):
    pass


@pytest.mark.parametrize("existed", [True, False])
def test_atomic_path_writes_only_on_success(tmp_path, existed):
    target = tmp_path / "out.txt"
    if existed:
        target.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("half-written")
            raise Boom
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.txt"] if existed else [])
    if existed:
        assert target.read_text() == "old"

    with atomic_path(target, suffix=".keras") as tmp:
        assert tmp.suffix == ".keras"
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_writes_give_ordinary_modes(tmp_path):
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~UMASK
    with atomic_dir(tmp_path / "images"):
        pass
    assert (tmp_path / "images").stat().st_mode & 0o777 == 0o777 & ~UMASK


def test_atomic_path_creates_parent(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_atomic_dir(tmp_path):
    target = tmp_path / "images"
    target.mkdir()
    (target / "old.jpg").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "new.jpg").write_text("new")
            raise Boom
    assert [p.name for p in tmp_path.iterdir()] == ["images"]
    assert [p.name for p in target.iterdir()] == ["old.jpg"]

    with atomic_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "new.jpg").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["images"]
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["sub", "sub/new.jpg"]


def test_csv_round_trip(tmp_path):
    path = tmp_path / "t.csv"
    rows = [{"path": "data/images/War 2.jpg", "label": "Negative", "note": 'comma, "quote"'},
            {"path": "dataset 50:50/Positive/ü.jpg", "label": "Positive", "note": "", "extra": "ignored"}]
    write_csv(path, rows, ["path", "label", "note"])
    raw = path.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n") and raw.count(b"\n") == 3
    assert raw.startswith(b"path,label,note\n")
    back = read_csv(path, required=("path", "label"))
    assert back == [{k: r[k] for k in ("path", "label", "note")} for r in rows]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_read_csv_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(PipelineError, match="nope.csv.*not found"):
        read_csv(missing)
    path = tmp_path / "t.csv"
    write_csv(path, [{"path": "x"}], ["path"])
    with pytest.raises(PipelineError) as err:
        read_csv(path, required=("path", "label"))
    assert str(path) in str(err.value) and "label" in str(err.value)


def test_write_json_and_file_digests(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"b": 1, "a": [1.5]}
    data = bytes(range(256)) * 50
    (tmp_path / "d.bin").write_bytes(data)
    assert digest_of(tmp_path / "d.bin") == hashlib.sha256(data).hexdigest()
    assert digest_of(tmp_path / "d.bin", "md5") == hashlib.md5(data).hexdigest()


def test_atomic_writes_remove_what_a_killed_run_left(tmp_path):
    (tmp_path / ".out.txt.k1ll3d.tmp").write_text("half of an earlier write")
    (tmp_path / ".images.k1ll3d.tmp").mkdir()
    (tmp_path / ".images.k1ll3d.tmp/a.jpg").write_text("half")
    (tmp_path / ".model.keras.k1ll3d.keras").write_text("half")
    (tmp_path / ".other.k1ll3d.tmp").write_text("not ours: kept")
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("new")
    with atomic_dir(tmp_path / "images") as tmp:
        (tmp / "b.jpg").write_text("new")
    with atomic_path(tmp_path / "model.keras", suffix=".keras") as tmp:
        tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.k1ll3d.tmp", "images", "model.keras", "out.txt"]


@pytest.mark.parametrize("name", ["plain.csv", "odd [1]*?.csv"])
def test_a_killed_writes_leftover_goes_at_the_next_write_and_nothing_else(tmp_path, name):
    """What kill -9 left of an earlier atomic write (a hidden temporary beside the file) is removed by the next
    write of that file, even when the name holds glob characters; another file's temporary stays."""
    leftover, other = tmp_path / f".{name}.abc123.tmp", tmp_path / ".other.csv.abc123.tmp"
    leftover.write_text("half")
    other.write_text("half")
    with atomic_path(tmp_path / name) as tmp:
        tmp.write_text("whole")
    assert (tmp_path / name).read_text() == "whole" and not leftover.exists() and other.exists()


def test_an_output_that_would_replace_an_input_is_refused_and_any_other_is_not(tmp_path, monkeypatch):
    """The guard behind predict's --out: the input files themselves (by any spelling or link) and any existing entry
    inside an input folder (hidden ones too, which no listing shows) are refused; new names and other files are not."""
    photos = tmp_path / "photos"
    (photos / "deeper").mkdir(parents=True)
    for name in ("a.jpg", "deeper/b.png", ".notes.csv"):
        (photos / name).write_bytes(b"photo")
    (tmp_path / "beach.jpg").write_bytes(b"photo")
    (tmp_path / "old.csv").write_text("path\n")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "beach.jpg")
    inputs = [photos, tmp_path / "beach.jpg", "s3://bucket/photos/"]
    for path in (tmp_path / "beach.jpg", photos / "../beach.jpg", tmp_path / "link.jpg"):
        with pytest.raises(PipelineError, match=r"--out would replace the input file .*beach.jpg; choose another "):
            refuse_replacing_inputs(path, inputs)
    for path in (photos / "a.jpg", photos / "deeper/b.png", photos / ".notes.csv", photos, photos / "deeper"):
        with pytest.raises(PipelineError, match=f"--out would replace a file in the input folder {photos}; "):
            refuse_replacing_inputs(path, inputs)
    monkeypatch.chdir(photos)  # another spelling of the same names
    with pytest.raises(PipelineError, match="a.jpg: --out would replace a file in the input folder ../photos"):
        refuse_replacing_inputs("a.jpg", ["../photos"])
    with pytest.raises(PipelineError, match="b.png: --out would replace the input file deeper/b.png"):
        refuse_replacing_inputs("./deeper/../deeper/b.png", ["deeper/b.png"])
    for path in (photos / "new.csv", tmp_path / "old.csv", tmp_path / "new.csv", "s3://bucket/photos/a.jpg"):
        refuse_replacing_inputs(path, inputs)  # a new name, even in an input folder, or a file that is not an input
    assert (photos / "a.jpg").read_bytes() == b"photo" and (tmp_path / "beach.jpg").read_bytes() == b"photo"
