"""Files on disk: atomic writes (nothing half-written survives a kill), CSV and JSON, hashing."""
import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

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


def refuse_replacing_inputs(path, inputs, flag="--out"):
    """A one-line PipelineError when writing ``path`` would replace one of ``inputs`` (the files and folders a
    command reads): ``path`` is one of those files, or an existing entry inside one of those folders.

    Work per input named, never per file under a folder, and none at all when ``path`` does not exist yet (it
    can replace nothing): a run over a million photos pays one stat. URLs (scheme://) never collide.
    """
    if "://" in str(path) or not os.path.lexists(path):
        return
    path = Path(path)
    entry = path.parent.resolve() / path.name  # the name a write replaces: a link itself, not what it points at
    for given in inputs:
        if "://" in str(given) or not os.path.exists(given):
            continue
        if os.path.isdir(given):
            root = Path(given).resolve()
            if entry == root or root in entry.parents:
                raise PipelineError(f"{path}: {flag} would replace a file in the input folder {given}; "
                                    f"choose another {flag}")
        elif entry == Path(given).parent.resolve() / Path(given).name or (
                os.path.exists(path) and os.path.samefile(path, given)):
            raise PipelineError(f"{path}: {flag} would replace the input file {given}; choose another {flag}")


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


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry: no clock in the file


def write_zip(path, members):
    """A zip archive of ``members`` [(name, data, like)], in order, each at ZIP_EPOCH with the compression and
    attributes of ``like`` (a ZipInfo): the same members, the same bytes (models.save, provenance.embed)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, like in members:
            entry = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            entry.compress_type, entry.external_attr = like.compress_type, like.external_attr
            archive.writestr(entry, data)


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
