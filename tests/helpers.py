"""Tiny generated images and zip archives for tests (plain functions, so any test file can import them)."""
import io
import random
import stat
import zipfile

from PIL import Image

OASIS_COLUMNS = ["", "Theme", "Category", "Source", "Valence_mean", "Valence_SD", "Valence_N",
                 "Arousal_mean", "Arousal_SD", "Arousal_N"]


def make_jpeg_bytes(width=8, height=6, colour=(200, 40, 40)):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_png_bytes(mode="RGBA", width=8, height=6, colour=None):
    colour = colour if colour is not None else {"RGBA": (10, 200, 10, 128), "L": 128}.get(mode, 0)
    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def make_garbage_bytes(n=600, seed=0):
    """Bytes no image decoder accepts (seeded, so every run is the same)."""
    return b"\x00garbage" + random.Random(seed).randbytes(n)


def symlink_info(name, target="/etc/passwd"):
    """(ZipInfo, bytes) for a member that unzip would create as a symbolic link to ``target``."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def write_zip(path, members):
    """Write ``{name or ZipInfo: bytes}`` to a zip at ``path``; a name ending in '/' is a folder entry."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if isinstance(name, str) and name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return path


def oasis_csv_bytes(rows, line_end="\r"):
    """OASIS.csv-like bytes: empty first header, ids I1…, rows given as (theme, category, valence)."""
    lines = [",".join(OASIS_COLUMNS)]
    for i, (theme, category, valence) in enumerate(rows, start=1):
        lines.append(",".join([f"I{i}", theme, category, "Pixabay", str(valence), "1.1", "100", "3.5", "1.2", "99"]))
    return line_end.join(lines).encode() + line_end.encode()


def make_oasis_zip(path, rows, images, top="shiny-server-abc", extra=None, line_end="\r"):
    """An OASIS-shaped archive: ``top/OASIS.csv`` (CR-only), ``top/images/<name>`` for ``images``
    ({file name: bytes}), folder entries, a macOS resource fork and an app file, plus ``extra`` members."""
    members = {
        f"{top}/": b"",
        f"{top}/__MACOSX/": b"",
        f"{top}/__MACOSX/._OASIS.csv": b"\x00\x05\x16\x07Mac OS X resource fork, Theme,Valence_mean",
        f"{top}/images/": b"",
        f"{top}/OASIS.csv": oasis_csv_bytes(rows, line_end),
        f"{top}/server.R": b"library(shiny)\nshinyServer(function(input, output) {})\n",
    }
    members.update({f"{top}/images/{name}": data for name, data in images.items()})
    members.update(extra or {})
    return write_zip(path, members)
