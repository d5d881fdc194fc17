"""Archive layouts → one labels table (path, label, valence, category, group).

Two layouts are understood:
- rated_csv: a CSV with Theme and Valence_mean columns (OASIS) beside an images/ folder; labels from valence;
- class_folders: images inside folders named Negative/ and Positive/ (the seed's `dataset 50:50`).

``group`` is the concept an image shows, so that splits keep its photos together: for rated_csv the Theme
without its trailing number ("Dog 3" → "Dog"); for class_folders each image is its own group (the audit stage
later joins near-copies into one group, in both layouts).
"""
import csv
import io
import math
import re
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from valence.data.images import decode
from valence.data.labels import CLASSES, class_counts
from valence.data.safe_zip import check_sizes, extract_member, is_symlink, open_zip, read_member, safe_member_path
from valence.errors import PipelineError
from valence.files import digest_of

LABEL_COLUMNS = ["path", "label", "valence", "category", "group"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CSV_COLUMNS = ("Theme", "Valence_mean")


def concept_of(theme):
    """OASIS' concept of a Theme: the name without its trailing number ("Dog 3" → "Dog", "Crosswalk 1 " → "Crosswalk")."""
    return re.sub(r"\s*\d+$", "", theme.strip()) or theme.strip()


def _is_junk(path):
    """macOS resource forks and folders: never data."""
    return "__MACOSX" in path.parts or path.name.startswith("._")


def _is_image_name(path):
    return path.suffix.lower() in IMAGE_SUFFIXES


def _members(archive, archive_path):
    """{archive path: ZipInfo} of the regular files, after checking that no member escapes the target."""
    members = {}
    for info in archive.infolist():
        try:
            path = safe_member_path(info.filename)
        except PipelineError as err:
            raise PipelineError(f"{archive_path}: {err}") from None
        if is_symlink(info):  # refused up front, before anything is extracted
            raise PipelineError(f"{archive_path}: archive member {info.filename!r} is a symbolic link")
        if not info.is_dir() and not _is_junk(path):
            members[path] = info
    if not members:
        raise PipelineError(f"{archive_path}: the archive holds no files")
    return members


def _csv_columns(archive, members):
    """{path: header columns} of every CSV member (any line ending: OASIS.csv uses a bare CR)."""
    columns = {}
    for path, info in members.items():
        if path.suffix.lower() == ".csv":
            header = read_member(archive, info)[:4096].decode("utf-8-sig", errors="replace")
            columns[path] = next(csv.reader([header.replace("\r", "\n").split("\n", 1)[0]]), [])
    return columns


def _rated_csvs(archive, members):
    return [path for path, columns in _csv_columns(archive, members).items()
            if all(column in columns for column in CSV_COLUMNS)]


def _class_of(path):
    name = path.parent.name.lower()
    return next((c for c in CLASSES if c.lower() == name), None)


def _csv_without_columns(archive, members):
    """'; <csv> lacks column(s) …' for the first CSV that has only some of the rated columns, else ''."""
    for path, columns in _csv_columns(archive, members).items():
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if len(missing) < len(CSV_COLUMNS):
            return f"; {path} lacks column(s) {', '.join(missing)}"
    return ""


def detect_layout(archive, members, archive_path):
    if _rated_csvs(archive, members):
        return "rated_csv"
    if any(_class_of(p) for p in members if _is_image_name(p)):
        return "class_folders"
    raise PipelineError(f"{archive_path}: cannot tell the layout: no CSV with columns "
                        f"{', '.join(CSV_COLUMNS)} and no Negative/ or Positive/ image folders"
                        f"{_csv_without_columns(archive, members)}")


def label_from_valence(valence, threshold, margin):
    """Positive above threshold + margin, Negative below threshold − margin, None (dropped) in between."""
    if valence > threshold + margin:
        return "Positive"
    if valence < threshold - margin:
        return "Negative"
    return None


def _read_rated_csv(archive, csv_path, archive_path):
    # OASIS.csv ends its lines with a bare CR; newline="" lets the csv module accept CR, LF or CRLF.
    try:
        text = read_member(archive, str(csv_path)).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PipelineError(f"{archive_path}: {csv_path} is not UTF-8 text (byte {err.start})") from None
    return list(csv.DictReader(io.StringIO(text, newline="")))


def select_rated_csv(archive, members, archive_path, threshold, margin):
    """[(member path, label, valence, category, group)], skipped [(name, reason)], number of neutral rows dropped."""
    csv_paths = _rated_csvs(archive, members)
    if len(csv_paths) != 1:
        raise PipelineError(f"{archive_path}: expected one rated CSV, found {len(csv_paths) or 'none'}"
                            f"{_csv_without_columns(archive, members) if not csv_paths else ''}")
    csv_path = csv_paths[0]
    image_dir = csv_path.parent / "images"
    by_theme = {p.stem: p for p in members if p.parent == image_dir and _is_image_name(p)}
    selected, skipped, neutral, used = [], [], 0, set()
    for line, row in enumerate(_read_rated_csv(archive, csv_path, archive_path), start=2):
        theme = (row.get("Theme") or "").strip()  # two OASIS themes carry a trailing space
        image = by_theme.get(theme)
        if image is None:
            skipped.append((f"{csv_path}:{line}", f"no image {image_dir}/{theme}.* for this row"))
            continue
        used.add(image)
        try:
            valence = float(row.get("Valence_mean"))
            if not math.isfinite(valence):  # 'NaN'/'inf' parse as floats but are no rating
                raise ValueError
        except (TypeError, ValueError):
            skipped.append((f"{csv_path}:{line}", f"Valence_mean {row.get('Valence_mean')!r} is not a number"))
            continue
        label = label_from_valence(valence, threshold, margin)
        if label is None:
            neutral += 1
            continue
        selected.append((image, label, valence, (row.get("Category") or "").strip(), concept_of(theme)))
    skipped += [(str(p), "image has no CSV row") for p in sorted(set(by_theme.values()) - used)]
    return selected, skipped, neutral


def select_class_folders(members):
    selected, skipped = [], []
    for path in sorted(members):
        label = _class_of(path)
        if label is None:
            continue
        if _is_image_name(path):
            selected.append((path, label, "", "", None))  # group: the image itself, named below
        else:
            skipped.append((str(path), "not an image file"))
    return selected, skipped


def _common_top(paths):
    """The single top folder every member sits in (GitHub archives have one), stripped from outputs."""
    tops = {p.parts[0] for p in paths if len(p.parts) > 1}
    return tops.pop() if len(tops) == 1 and all(len(p.parts) > 1 for p in paths) else None


def drop_duplicates(rows):
    """(rows kept, skipped): byte-identical images keep their first copy; one image under both labels keeps none.

    A duplicate could land in both the train and the test split, and a photo labelled both ways teaches nothing.
    """
    by_digest = {}
    for row in rows:
        by_digest.setdefault(digest_of(row["path"]), []).append(row)
    kept, skipped = [], []
    for copies in by_digest.values():
        first = copies[0]
        if len({r["label"] for r in copies}) > 1:
            names = ", ".join(f"{r['member']} ({r['label']})" for r in copies)
            skipped += [(r["member"], f"label conflict: the same image is {names}") for r in copies]
            continue
        kept.append(first)
        skipped += [(r["member"], f"duplicate of {first['member']}") for r in copies[1:]]
    kept_paths = {r["path"] for r in kept}
    for row in rows:
        if row["path"] not in kept_paths:
            Path(row["path"]).unlink()
    return kept, skipped


def build_image_set(archive_path, images_dir, layout="auto", threshold=4.0, margin=0.0,
                    max_total_mb=2048, max_compression_ratio=100):
    """Extract the labelled, decodable, distinct images of ``archive_path`` into ``images_dir``.

    Returns (rows for labels.csv, skipped [(name, reason)], summary counts).
    """
    with open_zip(archive_path) as archive:
        check_sizes(archive, archive_path, max_total_mb, max_compression_ratio)
        members = _members(archive, archive_path)
        if layout == "auto":
            layout = detect_layout(archive, members, archive_path)
        neutral = 0
        if layout == "rated_csv":
            selected, skipped, neutral = select_rated_csv(archive, members, archive_path, threshold, margin)
        else:
            selected, skipped = select_class_folders(members)
        top = _common_top(list(members))
        rows = []
        for member, label, valence, category, group in tqdm(selected, desc="extracting", unit="img"):
            relative = PurePosixPath(*member.parts[1:]) if top else member
            group = group or relative.with_suffix("").as_posix()
            out = extract_member(archive, members[member], images_dir, relative)
            try:
                decode(out)
            except ValueError as err:
                out.unlink()
                skipped.append((str(member), str(err)))
                continue
            rows.append({"path": out.as_posix(), "label": label, "valence": valence, "category": category,
                         "group": group, "member": str(member)})
    rows.sort(key=lambda r: r["path"])
    rows, duplicates = drop_duplicates(rows)
    skipped += duplicates
    counts = class_counts(rows)
    if not rows:
        raise PipelineError(f"{archive_path}: no usable labelled images ({layout} layout)")
    # which archive this was: the 720-image OASIS copy and the 900-image upstream one share a file name
    archive = {"sha256": digest_of(archive_path), "images": sum(map(_is_image_name, members))}
    summary = {"archive": archive, "images": len(rows), **counts, "groups": len({r["group"] for r in rows}),
               "neutral_dropped": neutral, "skipped": len(skipped)}
    for row in rows:
        del row["member"]
    return rows, sorted(skipped), summary
