"""Where the unzip stage reads photos from: a zip archive (checked, then extracted) or a folder on disk (read
in place, each chosen photo linked into data/images, copied only across file systems).

Both list their files as {relative POSIX path: handle}, read a file's bytes and place a file under a target
folder the same way, so the layouts in valence.data.layouts work on either.

    with open_source("data/raw", max_total_mb=2048, max_ratio=100) as source:   # the one .zip in data/raw
    with open_source("my_photos", …) as source:                                  # a folder, read in place
"""
import os
import shutil
from pathlib import Path, PurePosixPath

from valence.data.safe_zip import check_sizes, extract_member, is_symlink, open_zip, read_member, safe_member_path
from valence.errors import PipelineError
from valence.files import digest_of
from valence.config import RAW as DOWNLOADED


def is_junk(path):
    """macOS resource forks and folders: never data."""
    return "__MACOSX" in path.parts or path.name.startswith("._")


class ZipSource:
    """A zip archive: every member's path checked before anything is extracted; zip bombs and links refused."""

    def __init__(self, path, max_total_mb, max_ratio):
        self.path = Path(path)
        self.archive = open_zip(self.path)
        check_sizes(self.archive, self.path, max_total_mb, max_ratio)
        self.members = {}
        for info in self.archive.infolist():
            try:
                member = safe_member_path(info.filename)
            except PipelineError as err:
                raise PipelineError(f"{self.path}: {err}") from None
            if is_symlink(info):  # refused up front, before anything is extracted
                raise PipelineError(f"{self.path}: archive member {info.filename!r} is a symbolic link")
            if not info.is_dir() and not is_junk(member):
                self.members[member] = info
        if not self.members:
            raise PipelineError(f"{self.path}: the archive holds no files")

    def read(self, member):
        return read_member(self.archive, self.members[member])

    def place(self, member, target_dir, relative):
        return extract_member(self.archive, self.members[member], target_dir, relative)

    def describe(self):
        """(kind, facts) for metrics/data.json: the 720-image OASIS copy and the 900-image upstream archive share
        a file name, so the digest says which one this was."""
        return "archive", {"sha256": digest_of(self.path)}

    def close(self):
        self.archive.close()


class FolderSource:
    """A folder of photos (and perhaps a labels CSV), read in place; hidden files and macOS junk are skipped, and
    a symbolic link that leads out of the folder is an error."""

    def __init__(self, path):
        self.path = Path(path)
        root = self.path.resolve()
        self.members = {}
        for file in sorted(self.path.rglob("*")):
            relative = PurePosixPath(file.relative_to(self.path).as_posix())
            if is_junk(relative) or any(part.startswith(".") for part in relative.parts):
                continue
            if file.is_symlink() and not file.resolve().is_relative_to(root):
                raise PipelineError(f"{self.path}: {relative} is a symbolic link to {os.readlink(file)}, outside "
                                    "the folder; copy the file in instead")
            if file.is_file():  # a linked folder inside is not walked: its photos are listed where they are
                self.members[relative] = file
        if not self.members:
            raise PipelineError(f"{self.path}: the folder holds no files")

    def read(self, member):
        return self.members[member].read_bytes()

    def place(self, member, target_dir, relative):
        """A hard link to the photo (no copy of a large folder), or a copy where the file systems differ."""
        out = Path(target_dir, relative)
        out.parent.mkdir(parents=True, exist_ok=True)
        source = self.members[member].resolve()
        try:
            os.link(source, out)
        except OSError:
            shutil.copyfile(source, out)
        return out

    def describe(self):
        return "folder", {"path": str(self.path)}

    def close(self):
        pass


def open_source(path, max_total_mb=2048, max_ratio=100):
    """A ZipSource for a .zip file or a folder holding exactly one (the download stage's data/raw), else a
    FolderSource; a missing path or another kind of file is a one-line error."""
    path = Path(path)
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        archives = [p for p in entries if p.is_file() and p.suffix.lower() == ".zip"]
        if not entries or archives == entries:  # the download stage's folder: one archive, nothing else
            if len(archives) != 1:
                raise PipelineError(f"{path}: expected exactly one .zip archive, found {len(archives)}; "
                                    "run the download stage")
            return ZipSource(archives[0], max_total_mb, max_ratio)
        return FolderSource(path)
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise PipelineError(f"{path}: not a folder or a .zip archive (download.path)")
        return ZipSource(path, max_total_mb, max_ratio)
    if path == DOWNLOADED:
        raise PipelineError(f"{path}: not found; run the download stage first (dvc repro)")
    raise PipelineError(f"{path}: not found (download.path: a folder of photos or a .zip archive)")
