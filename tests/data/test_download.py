import hashlib
import io
import urllib.request
from pathlib import Path

import pytest

from helpers import make_jpeg_bytes, write_zip
from valence.data import download
from valence.data.download import fetch, keras_cache_path
from valence.errors import PipelineError

UNREACHABLE = "http://127.0.0.1:9/oasis.zip"  # the discard port: nothing listens, so a download fails at once


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    """Every test gets its own empty Keras cache, never the user's ~/.keras."""
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def archive_bytes(tmp_path):
    path = write_zip(tmp_path / "src.zip", {"top/Positive/a.jpg": make_jpeg_bytes()})
    return path.read_bytes()


def put_in_cache(keras_home, name, data):
    path = keras_home / "datasets" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_keras_cache_path_honours_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert keras_cache_path("x.zip") == tmp_path / "kh" / "datasets" / "x.zip"


@pytest.mark.parametrize("keras_home_value", [None, ""])
def test_keras_cache_path_default(tmp_path, monkeypatch, keras_home_value):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if keras_home_value is None:
        monkeypatch.delenv("KERAS_HOME", raising=False)
    else:
        monkeypatch.setenv("KERAS_HOME", keras_home_value)
    assert keras_cache_path("x.zip") == tmp_path / "home" / ".keras" / "datasets" / "x.zip"


@pytest.mark.parametrize("checksum", [None, "match", "MATCH"])
def test_fetch_uses_cache_copy(tmp_path, keras_home, monkeypatch, archive_bytes, checksum):
    monkeypatch.setattr(download, "_download", lambda *a, **k: pytest.fail("fetch went to the network"))
    put_in_cache(keras_home, "oasis.zip", archive_bytes)
    digest = hashlib.sha256(archive_bytes).hexdigest()
    sha = {None: None, "match": digest, "MATCH": digest.upper()}[checksum]
    out = tmp_path / "raw"
    target = fetch(UNREACHABLE, "oasis.zip", out, sha256=sha)
    assert target == out / "oasis.zip" and target.read_bytes() == archive_bytes
    assert [p.name for p in out.iterdir()] == ["oasis.zip"]


@pytest.mark.parametrize("source", ["cache", "file_url"])
def test_fetch_sha256_mismatch_leaves_nothing(tmp_path, keras_home, archive_bytes, source):
    if source == "cache":
        url = UNREACHABLE
        put_in_cache(keras_home, "oasis.zip", archive_bytes)
    else:
        (tmp_path / "served.zip").write_bytes(archive_bytes)
        url = (tmp_path / "served.zip").as_uri()
    out = tmp_path / "raw"
    wrong = hashlib.sha256(archive_bytes + b"x").hexdigest()
    with pytest.raises(PipelineError, match=f"sha256 is {hashlib.sha256(archive_bytes).hexdigest()}"):
        fetch(url, "oasis.zip", out, sha256=wrong)
    assert list(out.iterdir()) == []


def test_fetch_failure_keeps_previous_file(tmp_path, keras_home, archive_bytes):
    put_in_cache(keras_home, "oasis.zip", archive_bytes)
    out = tmp_path / "raw"
    out.mkdir()
    (out / "oasis.zip").write_bytes(b"previous")
    with pytest.raises(PipelineError):
        fetch(UNREACHABLE, "oasis.zip", out, sha256="0" * 64)
    assert [p.name for p in out.iterdir()] == ["oasis.zip"]
    assert (out / "oasis.zip").read_bytes() == b"previous"


def test_fetch_file_url_without_cache(tmp_path, archive_bytes):
    src = tmp_path / "served dir" / "served.zip"  # a space, so the URL is percent-encoded
    src.parent.mkdir()
    src.write_bytes(archive_bytes)
    out = tmp_path / "raw"
    target = fetch(src.as_uri(), "oasis.zip", out, sha256=hashlib.sha256(archive_bytes).hexdigest())
    assert target.read_bytes() == archive_bytes
    assert [p.name for p in out.iterdir()] == ["oasis.zip"]


@pytest.mark.parametrize("url", [UNREACHABLE, "file:///nonexistent/dir/oasis.zip", "not a url"])
def test_fetch_unreachable_without_cache(tmp_path, keras_home, url):
    out = tmp_path / "raw"
    with pytest.raises(PipelineError) as err:
        fetch(url, "oasis.zip", out)
    message = str(err.value)
    assert str(keras_home / "datasets" / "oasis.zip") in message and "demo" in message and url in message
    assert list(out.iterdir()) == []


class ShortResponse(io.BytesIO):
    """A response that promises more bytes (Content-Length) than it delivers: a dropped connection."""

    def __init__(self, data, length):
        super().__init__(data)
        self.headers = {"Content-Length": str(length)}


def test_fetch_truncated_download(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: ShortResponse(b"12345", 10))
    out = tmp_path / "raw"
    with pytest.raises(PipelineError, match="after 5 of 10 bytes"):
        fetch("https://example.invalid/oasis.zip", "oasis.zip", out)
    assert list(out.iterdir()) == []
    assert not Path(out, "oasis.zip").exists()
