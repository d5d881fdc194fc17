"""valence.data.sources: a folder read in place, or an archive, behind one interface."""
import os
import re

import pytest

from helpers import make_jpeg_bytes, write_zip
from valence.data.sources import FolderSource, ZipSource, open_source
from valence.errors import PipelineError


def test_a_folder_lists_its_files_but_not_hidden_files_or_macos_junk(tmp_path):
    for name in ("Negative/a.jpg", "Positive/deep er/b.jpg", ".DS_Store", "Positive/.hidden.jpg",
                 "__MACOSX/Positive/._b.jpg", ".git/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(make_jpeg_bytes())
    source = FolderSource(tmp_path)
    assert sorted(map(str, source.members)) == ["Negative/a.jpg", "Positive/deep er/b.jpg"]
    assert source.read(next(iter(source.members))) == make_jpeg_bytes()


def test_placing_a_photo_links_it_and_leaves_the_original_alone(tmp_path):
    (tmp_path / "photos").mkdir()
    original = tmp_path / "photos/a.jpg"
    original.write_bytes(make_jpeg_bytes())
    source = FolderSource(tmp_path / "photos")
    placed = source.place(next(iter(source.members)), tmp_path / "images", "Positive/a.jpg")
    assert placed == tmp_path / "images/Positive/a.jpg" and placed.read_bytes() == original.read_bytes()
    assert os.stat(placed).st_ino == os.stat(original).st_ino  # a link, not a copy
    placed.unlink()
    assert original.read_bytes() == make_jpeg_bytes()


def test_a_link_inside_the_folder_is_a_photo_one_leading_out_is_an_error(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(make_jpeg_bytes())
    (folder / "again.jpg").symlink_to("a.jpg")
    assert sorted(map(str, FolderSource(folder).members)) == ["a.jpg", "again.jpg"]
    (folder / "inner").symlink_to(folder, target_is_directory=True)  # a linked folder inside: nothing new
    assert sorted(map(str, FolderSource(folder).members)) == ["a.jpg", "again.jpg"]
    (tmp_path / "secret.jpg").write_bytes(make_jpeg_bytes())
    (folder / "out.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(PipelineError, match=r"photos: out.jpg is a symbolic link to .*secret.jpg, outside the folder"):
        FolderSource(folder)
    (folder / "out.jpg").unlink()
    (folder / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(PipelineError, match=r"photos: elsewhere is a symbolic link to .*, outside the folder"):
        FolderSource(folder)


def test_open_source_takes_an_archive_a_folder_holding_one_or_a_folder_of_photos(tmp_path):
    (tmp_path / "raw").mkdir()
    write_zip(tmp_path / "raw/one.zip", {"top/Positive/a.jpg": make_jpeg_bytes()})
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos/a.jpg").write_bytes(make_jpeg_bytes())
    assert isinstance(open_source(tmp_path / "raw"), ZipSource)
    assert isinstance(open_source(tmp_path / "raw/one.zip"), ZipSource)
    assert isinstance(open_source(tmp_path / "photos"), FolderSource)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "photos: not found (download.path"),
    (lambda d: (d / "photos").write_text("hi"), "photos: not a folder or a .zip archive"),
    (lambda d: (d / "photos").mkdir() or [write_zip(d / f"photos/{n}.zip", {"a.jpg": b"x"}) for n in "ab"],
     "photos: expected exactly one .zip archive, found 2"),
    (lambda d: (d / "photos").mkdir(), "photos: expected exactly one .zip archive, found 0"),
    (lambda d: (d / "photos/.hidden").mkdir(parents=True), "photos: expected exactly one .zip archive, found 0"),
])
def test_open_source_errors_name_the_path(tmp_path, monkeypatch, make, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    with pytest.raises(PipelineError, match=re.escape(message)):
        open_source("photos")


def test_before_the_download_stage_ran_unzip_says_to_run_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="data/raw: not found; run the download stage first"):
        open_source("data/raw")
