import zipfile

import pytest

from helpers import make_jpeg_bytes, symlink_info, write_zip
from valence.data.safe_zip import extract_member, open_zip, safe_member_path
from valence.errors import PipelineError


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/..", "/etc/passwd", "C:/x", "C:\\x",
                                  "..\\x", "a\\..\\..\\x", "\\\\server\\share\\x", "/"])
def test_safe_member_path_rejects(name):
    with pytest.raises(PipelineError, match="archive member"):
        safe_member_path(name)


@pytest.mark.parametrize("name, parts", [("a/b c/d.jpg", ("a", "b c", "d.jpg")),
                                         ("dataset 50:50/Negative/x.jpg", ("dataset 50:50", "Negative", "x.jpg")),
                                         ("a\\b.jpg", ("a", "b.jpg")),
                                         ("a/..b/c..jpg", ("a", "..b", "c..jpg"))])
def test_safe_member_path_accepts(name, parts):
    assert safe_member_path(name).parts == parts


def test_extract_member(tmp_path):
    jpeg = make_jpeg_bytes()
    link, link_target = symlink_info("top/link.jpg")
    write_zip(tmp_path / "a.zip", {"top/x y.jpg": jpeg, link: link_target})
    out_dir = tmp_path / "out"
    with open_zip(tmp_path / "a.zip") as zf:
        out = extract_member(zf, zf.getinfo("top/x y.jpg"), out_dir, "deep/x y.jpg")
        assert out == out_dir / "deep" / "x y.jpg" and out.read_bytes() == jpeg
        with pytest.raises(PipelineError, match="symbolic link"):
            extract_member(zf, zf.getinfo("top/link.jpg"), out_dir, "link.jpg")
    assert not (out_dir / "link.jpg").exists() and not (out_dir / "link.jpg").is_symlink()


@pytest.mark.parametrize("content", [b"<!DOCTYPE html><html><body>Not Found</body></html>\n", b"", None])
def test_open_zip_not_a_zip(tmp_path, content):
    path = tmp_path / "archive.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError) as err:
        open_zip(path)
    assert str(path) in str(err.value)


def test_open_zip_reads_a_zip(tmp_path):
    write_zip(tmp_path / "a.zip", {"f.txt": b"hi"})
    with open_zip(tmp_path / "a.zip") as zf:
        assert isinstance(zf, zipfile.ZipFile) and zf.read("f.txt") == b"hi"
