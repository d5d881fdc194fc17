"""Reading an untrusted zip archive safely: no member path outside the target folder, no symbolic links,
no zip bomb, and damaged members as one-line errors."""
import contextlib
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from valence.errors import PipelineError


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
