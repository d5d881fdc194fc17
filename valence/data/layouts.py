"""Layouts of an archive or a folder (valence.data.sources) → one labels table (path, label, valence, arousal,
category, group).

Three layouts are understood:
- rated_csv: a CSV with Theme and Valence_mean columns (OASIS) beside an images/ folder; labels from valence,
  and the rated arousal from Arousal_mean where the CSV has it;
- labels_csv: a CSV with a ``path`` column (relative to the CSV's folder) and either ``label`` (Negative or
  Positive) or a numeric rating column named by unzip.rating_column (then also the valence rating); an arousal
  rating from the column unzip.arousal_column names; optional ``group`` and ``category`` columns; other columns
  are ignored;
- class_folders: images inside folders named Negative/ and Positive/ (the seed's `dataset 50:50`).

``group`` is what must stay on one side of every split: for rated_csv the concept, the Theme without its
trailing number ("Dog 3" → "Dog"); for labels_csv its group column; otherwise each image is its own group (the
audit stage later joins near-copies into one group, in every layout).
"""
import csv
import functools
import io
import math
import re
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from valence.data.images import decode
from valence.data.labels import CLASSES, class_counts
from valence.data.safe_zip import safe_member_path
from valence.data.sources import open_source
from valence.errors import PipelineError
from valence.files import digest_of

LABEL_COLUMNS = ["path", "label", "valence", "arousal", "category", "group"]  # ratings: "" where there is none
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CSV_COLUMNS = ("Theme", "Valence_mean")  # OASIS' rated CSV
LAYOUTS = ("auto", "rated_csv", "labels_csv", "class_folders")


def concept_of(theme):
    """OASIS' concept of a Theme: the name without its trailing number ("Dog 3" → "Dog", "Crosswalk 1 " → "Crosswalk")."""
    return re.sub(r"\s*\d+$", "", theme.strip()) or theme.strip()


def _is_image_name(path):
    return path.suffix.lower() in IMAGE_SUFFIXES


@functools.lru_cache(maxsize=4)  # layout detection and selection ask again: read each header once per source
def _csv_columns(source):
    """{path: header columns} of every CSV file (any line ending: OASIS.csv uses a bare CR)."""
    columns = {}
    for path in source.members:
        if path.suffix.lower() == ".csv":
            header = source.read(path)[:4096].decode("utf-8-sig", errors="replace")
            columns[path] = [c.strip() for c in next(csv.reader([header.replace("\r", "\n").split("\n", 1)[0]]), [])]
    return columns


def _rated_csvs(source):
    return [path for path, columns in _csv_columns(source).items() if all(column in columns for column in CSV_COLUMNS)]


def _labels_csvs(source):
    """CSVs with a path column that are not OASIS' rated CSV: labels files."""
    return [path for path, columns in _csv_columns(source).items()
            if "path" in columns and not all(column in columns for column in CSV_COLUMNS)]


def _class_of(path):
    name = path.parent.name.lower()
    return next((c for c in CLASSES if c.lower() == name), None)


def _csv_without_columns(source):
    """'; <csv> lacks column(s) …' for the first CSV that has only some of the rated columns, else ''."""
    for path, columns in _csv_columns(source).items():
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if len(missing) < len(CSV_COLUMNS):
            return f"; {path} lacks column(s) {', '.join(missing)}"
    return ""


def detect_layout(source):
    if _rated_csvs(source):
        return "rated_csv"
    if _labels_csvs(source):
        return "labels_csv"
    if any(_class_of(p) for p in source.members if _is_image_name(p)):
        return "class_folders"
    raise PipelineError(f"{source.path}: cannot tell the layout: no CSV with a path column or with columns "
                        f"{', '.join(CSV_COLUMNS)}, and no Negative/ or Positive/ image folders"
                        f"{_csv_without_columns(source)}")


def label_from_valence(valence, threshold, margin):
    """Positive above threshold + margin, Negative below threshold − margin, None (dropped) in between."""
    if valence > threshold + margin:
        return "Positive"
    if valence < threshold - margin:
        return "Negative"
    return None


def _read_csv(source, csv_path):
    # OASIS.csv ends its lines with a bare CR; newline="" lets the csv module accept CR, LF or CRLF.
    try:
        text = source.read(csv_path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PipelineError(f"{source.path}: {csv_path} is not UTF-8 text (byte {err.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    for row in rows:  # header cells keep no stray spaces: " label" is label
        for key in [k for k in row if isinstance(k, str) and k != k.strip()]:
            row[key.strip()] = row.pop(key)
    return rows


def select_rated_csv(source, threshold, margin):
    """[(member path, label, valence, category, group)], skipped [(name, reason)], number of neutral rows dropped."""
    csv_paths = _rated_csvs(source)
    if len(csv_paths) != 1:
        raise PipelineError(f"{source.path}: expected one rated CSV, found {len(csv_paths) or 'none'}"
                            f"{_csv_without_columns(source) if not csv_paths else ''}")
    csv_path = csv_paths[0]
    image_dir = csv_path.parent / "images"
    by_theme = {p.stem: p for p in source.members if p.parent == image_dir and _is_image_name(p)}
    selected, skipped, neutral, used = [], [], 0, set()
    for line, row in enumerate(_read_csv(source, csv_path), start=2):
        theme = (row.get("Theme") or "").strip()  # two OASIS themes carry a trailing space
        image = by_theme.get(theme)
        if image is None:
            skipped.append((f"{csv_path}:{line}", f"no image {image_dir}/{theme}.* for this row"))
            continue
        used.add(image)
        valence, arousal = _number(row.get("Valence_mean")), _number(row.get("Arousal_mean"))
        if valence is None:
            skipped.append((f"{csv_path}:{line}", f"Valence_mean {row.get('Valence_mean')!r} is not a number"))
            continue
        if arousal is None and "Arousal_mean" in row:  # a CSV without the column has no arousal for any row
            skipped.append((f"{csv_path}:{line}", f"Arousal_mean {row.get('Arousal_mean')!r} is not a number"))
            continue
        label = label_from_valence(valence, threshold, margin)
        if label is None:
            neutral += 1
            continue
        selected.append((image, label, (valence, "" if arousal is None else arousal),
                         (row.get("Category") or "").strip(), concept_of(theme)))
    skipped += [(str(p), "image has no CSV row") for p in sorted(set(by_theme.values()) - used)]
    return selected, skipped, neutral


def _number(value):
    """``value`` as a finite float, or None ('NaN' and 'inf' parse as floats but are no rating)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rating(value, where, column):
    """A rating cell as a number; anything else is a one-line error naming ``where``."""
    number = _number(value)
    if number is None:
        raise PipelineError(f"{where}: {column} {value!r} is not a number")
    return number


def select_labels_csv(source, threshold, margin, rating_column=None, arousal_column=None):
    """A labels file: (selected as select_rated_csv, skipped, neutral dropped). Labels come from the label column,
    or from ``rating_column`` through threshold ± margin; arousal from ``arousal_column``; a bad row is a
    one-line error naming it."""
    csv_paths = _labels_csvs(source)
    if len(csv_paths) != 1:
        raise PipelineError(f"{source.path}: expected one labels CSV (a path column), found "
                            f"{', '.join(map(str, csv_paths)) if csv_paths else 'none'}")
    csv_path = csv_paths[0]
    name = f"{source.path}/{csv_path}"
    columns = _csv_columns(source)[csv_path]
    needed = rating_column or "label"
    if needed not in columns:
        hint = "" if rating_column else "; to label from a numeric rating column, set unzip.rating_column"
        raise PipelineError(f"{name}: no column {needed!r} (columns: {', '.join(columns)}){hint}")
    if arousal_column and arousal_column not in columns:
        raise PipelineError(f"{name}: no column {arousal_column!r} (unzip.arousal_column; columns: "
                            f"{', '.join(columns)})")
    selected, skipped, neutral, rows_of = [], [], 0, {}
    for line, row in enumerate(_read_csv(source, csv_path), start=2):
        where = f"{name}, row {line}"
        written = (row.get("path") or "").strip()
        if not written:
            raise PipelineError(f"{where}: the path is empty")
        try:
            member = csv_path.parent / safe_member_path(written)
        except PipelineError:
            raise PipelineError(f"{where}: path {written!r} leads out of the folder; paths are relative to "
                                "the CSV's folder and stay inside it") from None
        if member in rows_of:
            raise PipelineError(f"{where}: {written} is listed again (first on row {rows_of[member]})")
        rows_of[member] = line
        arousal = _rating(row.get(arousal_column), where, arousal_column) if arousal_column else ""
        if rating_column:
            valence = _rating(row.get(rating_column), where, rating_column)
            label = label_from_valence(valence, threshold, margin)
            if label is None:
                neutral += 1
                continue
        else:
            valence, written_label = "", (row.get("label") or "").strip()
            label = next((c for c in CLASSES if c.lower() == written_label.lower()), None)
            if label is None:
                raise PipelineError(f"{where}: label {written_label!r} is not one of {', '.join(CLASSES)}")
        if member not in source.members:
            skipped.append((f"{csv_path}:{line}", f"no file {member}"))
            continue
        group = (row.get("group") or "").strip() or None  # none: the image is its own group
        selected.append((member, label, (valence, arousal), (row.get("category") or "").strip(), group))
    listed = set(rows_of)
    skipped += [(str(p), "image not in the labels CSV") for p in sorted(source.members)
                if _is_image_name(p) and p not in listed]
    return selected, skipped, neutral


def select_class_folders(source):
    selected, skipped = [], []
    for path in sorted(source.members):
        label = _class_of(path)
        if label is None:
            continue
        if _is_image_name(path):
            selected.append((path, label, ("", ""), "", None))  # no ratings; group: the image itself, named below
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


def build_image_set(source_path, images_dir, layout="auto", threshold=4.0, margin=0.0,
                    max_total_mb=2048, max_compression_ratio=100, rating_column=None, arousal_column=None):
    """Put the labelled, decodable, distinct images of ``source_path`` (an archive, or a folder read in place)
    into ``images_dir``.

    Returns (rows for labels.csv, skipped [(name, reason)], summary counts).
    """
    source = open_source(source_path, max_total_mb, max_compression_ratio)
    try:
        if layout == "auto":
            layout = detect_layout(source)
        neutral = 0
        if layout == "rated_csv":
            selected, skipped, neutral = select_rated_csv(source, threshold, margin)
        elif layout == "labels_csv":
            selected, skipped, neutral = select_labels_csv(source, threshold, margin, rating_column, arousal_column)
        else:
            selected, skipped = select_class_folders(source)
        top = _common_top(list(source.members))
        rows = []
        for member, label, (valence, arousal), category, group in tqdm(selected, desc="extracting", unit="img"):
            relative = PurePosixPath(*member.parts[1:]) if top else member
            group = group or relative.with_suffix("").as_posix()
            out = source.place(member, images_dir, relative)
            try:
                decode(out)
            except ValueError as err:
                out.unlink()
                skipped.append((str(member), str(err)))
                continue
            rows.append({"path": out.as_posix(), "label": label, "valence": valence, "arousal": arousal,
                         "category": category, "group": group, "member": str(member)})
        kind, facts = source.describe()
        facts["images"] = sum(map(_is_image_name, source.members))
    finally:
        source.close()
    rows.sort(key=lambda r: r["path"])
    rows, duplicates = drop_duplicates(rows)
    skipped += duplicates
    counts = class_counts(rows)
    if not rows:
        raise PipelineError(f"{source.path}: no usable labelled images ({layout} layout)")
    summary = {kind: facts, "images": len(rows), **counts, "groups": len({r["group"] for r in rows}),
               "neutral_dropped": neutral, "skipped": len(skipped)}
    for row in rows:
        del row["member"]
    return rows, sorted(skipped), summary
