"""Files on disk: atomic writes, hashing and safe archive extraction."""
import contextlib
import csv
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from valence.errors import PipelineError


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Readers never see a half-written file, and a crash leaves the old file intact.
    ``suffix`` keeps an extension that a writer insists on (Keras wants ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path, data):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path, rows, fieldnames):
    """Write dict rows with a header; '\n' line ends so the bytes are the same everywhere."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def read_csv(path, required=()):
    """Read a CSV with a header into dict rows; missing file or columns are PipelineErrors."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def safe_member_path(name):
    """The member's path inside the archive, or PipelineError if it would escape the target folder."""
    if "\\" in name:
        name = name.replace("\\", "/")
    pure = PurePosixPath(name)
    if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")):
        raise PipelineError(f"archive member {name!r} has an absolute path")
    if ".." in pure.parts:
        raise PipelineError(f"archive member {name!r} points outside the archive folder ('..')")
    return pure


def open_zip(path):
    """Open a zip archive, turning 'not a zip' into a PipelineError that names the file."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise PipelineError(f"{path}: not a readable zip archive ({err})") from None


def is_symlink(info):
    return stat.S_ISLNK(info.external_attr >> 16)


def extract_member(archive, info, target_dir, relative_path):
    """Copy one member's bytes to ``target_dir/relative_path`` (never following its own path)."""
    if is_symlink(info):
        raise PipelineError(f"archive member {info.filename!r} is a symbolic link")
    out = Path(target_dir, relative_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out
