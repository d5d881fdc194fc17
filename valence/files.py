"""Files on disk: atomic writes, hashing and safe archive extraction."""
import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from valence.errors import PipelineError

UMASK = os.umask(0o022)  # reading the umask means setting it: put it straight back
os.umask(UMASK)


def remove_stale_temporaries(path, suffix):
    """Delete what a killed run (kill -9, power loss) left of an earlier atomic write of ``path``.

    Stages run one at a time (DVC locks the repository), so no live writer owns these.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Readers never see a half-written file, and a crash leaves the old file intact.
    ``suffix`` keeps an extension that a writer insists on (Keras wants ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it private (0600); the output is an ordinary file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, ".tmp")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it private (0700)
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


def digest_of(path, algorithm="sha256"):
    """The hex digest of a file's bytes, read in chunks (md5 is what dvc.lock records for an out)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


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


def check_sizes(archive, path, max_total_mb, max_ratio, large=1 << 20):
    """Refuse a zip bomb before extracting anything: too many bytes in all, or a large member packed too well.

    The sizes come from the archive's headers; zipfile never reads a member past its declared size.
    """
    infos = [i for i in archive.infolist() if not i.is_dir()]
    total = sum(i.file_size for i in infos)
    if total > max_total_mb * 2**20:
        raise PipelineError(f"{path}: unpacks to {total / 2**20:.0f} MiB, more than unzip.max_total_mb "
                            f"({max_total_mb}); raise it if the archive is genuine")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= large and ratio > max_ratio:
            raise PipelineError(f"{path}: member {info.filename!r} is compressed {ratio:.0f}:1, more than "
                                f"unzip.max_compression_ratio ({max_ratio}); a zip bomb?")


def is_symlink(info):
    return stat.S_ISLNK(info.external_attr >> 16)


def extract_member(archive, info, target_dir, relative_path):
    """Copy one member's bytes to ``target_dir/relative_path`` (never following its own path)."""
    if is_symlink(info):
        raise PipelineError(f"archive member {info.filename!r} is a symbolic link")
    out = Path(target_dir, relative_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with member_errors(archive, info), archive.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def read_member(archive, info):
    """A member's bytes (for small files such as the CSV)."""
    with member_errors(archive, info):
        return archive.read(info)


@contextlib.contextmanager
def member_errors(archive, info):
    """Turn a damaged member (bad CRC, truncated or corrupt data, unsupported method, encryption) into one line."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        name = getattr(info, "filename", info)
        raise PipelineError(f"{archive.filename}: member {name!r} is damaged or unreadable "
                            f"({type(err).__name__}: {err})") from None
