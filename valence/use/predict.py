"""P(Positive) for photos: scoring with flip averaging (fold, export, predict, serve), and the predict
command's files and folders in, one row per image out.

    python -m valence predict photos/ beach.jpg --out predictions.csv [--model models/model.tflite]
    python -m valence predict photos/ --out predictions.parquet    # the same columns, typed, as Parquet

Images go through training's own preprocessing (`images.decode`, then `images.model_input`), so an image
from the test split gets the probability evaluate wrote for it. Files that are not usable images are listed
and skipped; the run goes on.

What is written: ``--out`` (CSV, or Parquet for a .parquet name), its rows written batch by batch as they are
scored through a temporary file renamed onto it at the end: path, probability, label, the model's ratings and
photo check where it has them, then model_md5 and model_source (valence.use.provenance: which model file gave the
row, and its artifact version or commit where the repository records it). Beside it, <out>.json: the model's
whole identity, threshold, flip averaging, the counts (rows, skipped files, rows that do not look like photos,
rows by label), when the run started and finished, and this package's version.

A path may also be a URL fsspec reads, such as s3://bucket/photos/ (s3fs comes with dvc-s3; credentials and
endpoint from the usual AWS_* variables or ~/.aws): the objects under it are listed and read like files, and
one that cannot be read is skipped with the reason.
"""
import contextlib
import csv
import io
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valence import __version__
from valence.data.images import decode, model_input
from valence.config import LOGIT_MAP, PHOTO, PHOTO_LINE, PHOTO_SCORE, PROBABILITY
from valence.data.labels import RATINGS, label_of
from valence.errors import PipelineError, first_line
from valence.files import atomic_path, write_json
from valence.runtime import cores
from valence.use.provenance import source

COLUMNS = ["path", PROBABILITY, "label"]  # then the model's ratings, where it learnt some (``columns``)
PHOTO_COLUMNS = [PHOTO_SCORE, PHOTO]  # the photo check's score and its verdict, where the model has one
MODEL_COLUMNS = ["model_md5", "model_source"]  # last in every row written: which model gave it
NUMBERS = {PROBABILITY, PHOTO_SCORE, *RATINGS}  # float64 in Parquet; every other column is a string
ROW_GROUP = 8192  # Parquet rows a row group: few groups over a large run, little held before each is written


def columns(rows):
    """The CSV's columns for ``rows``: COLUMNS, then the ratings they carry (a model without rating heads
    writes no rating columns rather than inventing numbers) and the photo check's (a model without one: none)."""
    return (COLUMNS + [name for name in RATINGS if any(name in r for r in rows)]
            + (PHOTO_COLUMNS if any(PHOTO in r for r in rows) else []))


def is_url(path):
    """s3://bucket/key and other fsspec URLs, as opposed to paths on this machine's file system."""
    return "://" in str(path)


def visible(names, root):
    """``names`` under ``root`` (sorted) without those with a hidden file or folder name below ``root``."""
    return sorted(n for n in names if not any(part.startswith(".") for part in Path(n).relative_to(root).parts))


def url_files(url):
    """The object at ``url``, or every object under it (sorted; hidden names skipped), as URLs."""
    try:
        import fsspec

        filesystem, root = fsspec.core.url_to_fs(url)
        if filesystem.isdir(root):
            return [filesystem.unstrip_protocol(n) for n in visible(filesystem.find(root), root)]
        if filesystem.isfile(root):
            return [url]
    except ImportError as err:
        raise PipelineError(f"{url}: reading it needs {err.name} (pip install -r requirements.txt)") from None
    except Exception as err:  # no credentials, no endpoint, no bucket: whatever the file system says, in one line
        raise PipelineError(f"{url}: cannot list it ({first_line(err)})") from None
    raise PipelineError(f"{url}: no such file or folder")


def image_files(paths):
    """The files named, then every file under the folders named (recursively, sorted; hidden names skipped);
    URLs (``is_url``) stay strings, listed by ``url_files``."""
    files = []
    for path in paths:
        if is_url(path):
            files += url_files(str(path))
            continue
        path = Path(path)
        if path.is_dir():
            files += visible((p for p in path.rglob("*") if p.is_file()), path)
        elif path.is_file():
            files.append(path)
        else:
            raise PipelineError(f"{path}: no such file or folder")
    if not files:
        raise PipelineError(f"no files to predict on in {', '.join(map(str, paths)) or '(no paths given)'}")
    return files


def read_url(url):
    """The bytes at an fsspec URL, as a file object ``decode`` reads; an unreadable one is a ValueError saying why."""
    try:
        import fsspec

        with fsspec.open(url, "rb") as remote:
            return io.BytesIO(remote.read())
    except FileNotFoundError:
        raise ValueError("no such object (deleted since it was listed?)") from None
    except Exception as err:  # a worker without credentials or a route to the store: skipped, the run goes on
        raise ValueError(f"cannot read it ({type(err).__name__}: {first_line(err)})") from None


def load_photo(path, height, width):
    """(pixels, None) for a usable image, (None, reason) for anything else."""
    try:
        return model_input(decode(read_url(path) if is_url(path) else path), height, width), None
    except ValueError as err:
        return None, str(err)


def values_beside_probability(classifier, scores, i):
    """{rating: image ``i``'s predicted rating} for each rating ``classifier`` learnt (none without rating heads),
    and the photo check's {"photo_score": …, "photo": "yes" | "no"} where it has one (below 0.5: "no", the image
    does not look like the photos the model learnt from)."""
    photo = {}
    if classifier.photo_check:
        score = float(scores[PHOTO][i])
        photo = {PHOTO_SCORE: round(score, 4), PHOTO: "yes" if score >= PHOTO_LINE else "no"}
    return {**{name: round(float(scores[name][i]), 4) for name in classifier.ratings}, **photo}


def score_all(classifier, batch, flip_average=False):
    """{"probability": P(Positive), rating: predicted rating …} (and LOGIT_MAP, where the model gives it) for a
    uint8 batch; with ``flip_average``, each the mean over the image and its mirror image (the mirror's map
    mirrored back)."""
    scores = classifier.scores(batch)
    if flip_average:
        mirrored = classifier.scores(batch[:, :, ::-1])
        mirrored = {name: value[:, :, ::-1] if name == LOGIT_MAP else value for name, value in mirrored.items()}
        scores = {name: (value + mirrored[name]) / 2 for name, value in scores.items()}
    return scores


def score_images(classifier, batch, flip_average=False):
    """P(Positive) for a uint8 batch; with ``flip_average``, the mean over each image and its mirror image."""
    return score_all(classifier, batch, flip_average)[PROBABILITY]


def score_batches(classifier, images, batch_size, flip_average=False, desc="scoring"):
    """``score_images`` over a uint8 array of any length, ``batch_size`` images at a time, with a progress bar."""
    starts = range(0, len(images), batch_size)
    return np.concatenate([score_images(classifier, images[i:i + batch_size], flip_average)
                           for i in tqdm(starts, desc=desc, unit="batch")])


def predict_batches(classifier, files, batch_size=64, threshold=0.5, flip_average=False, progress=True, band=0.0):
    """(rows, skipped) for each ``batch_size`` files in turn, as ``predict_files`` gives them for all.

    Files are decoded a batch at a time, in one thread per core, so memory stays flat over large folders.
    """
    with ThreadPoolExecutor(cores()) as pool, tqdm(total=len(files), desc="predicting", unit="img",
                                                   disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            loaded = list(pool.map(lambda f: load_photo(f, classifier.height, classifier.width), chunk))
            good = [(f, pixels) for f, (pixels, _) in zip(chunk, loaded) if pixels is not None]
            skipped = [(str(f), reason) for f, (_, reason) in zip(chunk, loaded) if reason is not None]
            rows = []
            if good:
                scores = score_all(classifier, np.stack([pixels for _, pixels in good]), flip_average)
                rows = [{"path": str(f), PROBABILITY: round(float(p), 6), "label": label_of(p, threshold, band),
                         **values_beside_probability(classifier, scores, i)}
                        for i, ((f, _), p) in enumerate(zip(good, scores[PROBABILITY]))]
            bar.update(len(chunk))
            yield rows, skipped


def predict_files(classifier, files, batch_size=64, threshold=0.5, flip_average=False, progress=True, band=0.0):
    """Rows (path, probability, label and the model's ratings) for the files that are images, and (path, reason)
    for those skipped."""
    rows, skipped = [], []
    for batch_rows, batch_skipped in predict_batches(classifier, files, batch_size, threshold, flip_average, progress,
                                                     band):
        rows += batch_rows
        skipped += batch_skipped
    return rows, skipped


# --- what predict writes: the rows (CSV or Parquet) and the sidecar ------------------------------------------

def is_parquet(out):
    return Path(out).suffix.lower() == ".parquet"


def parquet():
    """pyarrow.parquet, or the one-line error that it is not installed."""
    try:
        import pyarrow.parquet
    except ImportError:
        raise PipelineError("writing Parquet needs pyarrow (pip install -r requirements.txt)") from None
    return pyarrow.parquet


class CsvRows:
    """Rows into an open CSV file, header first; '\n' line ends, as valence.files.write_csv writes."""

    def __init__(self, tmp, fields, stack):
        f = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
        self.writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        self.writer.writeheader()

    def write(self, rows):
        self.writer.writerows(rows)

    def finish(self):
        pass


class ParquetRows:
    """Rows into a Parquet file, ROW_GROUP at a time: NUMBERS as float64, the rest as strings, whether a row
    holds numbers (scored here) or their text (read back from a cluster's parts)."""

    def __init__(self, tmp, fields, stack):
        import pyarrow as pa

        self.pa, self.group, self.pending = pa, ROW_GROUP, []
        self.schema = pa.schema([(name, pa.float64() if name in NUMBERS else pa.string()) for name in fields])
        self.writer = stack.enter_context(parquet().ParquetWriter(tmp, self.schema))

    def write(self, rows):
        self.pending += rows
        while len(self.pending) >= self.group:
            self.flush(self.group)

    def finish(self):
        self.flush(len(self.pending))

    def flush(self, n):
        rows, self.pending = self.pending[:n], self.pending[n:]
        if rows:
            arrays = [self.pa.array([typed(field.name, r.get(field.name)) for r in rows], field.type)
                      for field in self.schema]
            self.writer.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))


def typed(name, value):
    """A row's value as its Parquet column holds it (a cluster part's text "" is a missing number)."""
    if name in NUMBERS:
        return None if value is None or value == "" else float(value)
    return None if value is None else str(value)


def write_predictions(out, batches, model):
    """The rows of ``batches`` ((rows, skipped) pairs, as ``predict_batches`` yields them) into ``out`` as they
    come: Parquet for a .parquet ``out``, else CSV, each row ending with ``model``'s md5 and source (``model``:
    valence.use.provenance.identity). A temporary file is renamed onto ``out`` when the last batch is in; nothing
    is written when no batch has a row. Returns the counts the sidecar gives and the skipped (path, reason)s."""
    ending = dict(zip(MODEL_COLUMNS, (model["md5"], source(model))))
    labels, not_photos, skipped, sink = Counter(), 0, [], None
    with contextlib.ExitStack() as stack:
        for rows, skipped_here in batches:
            skipped += skipped_here
            if not rows:
                continue
            if sink is None:  # the columns are the first rows' (a model gives every row the same)
                sink = (ParquetRows if is_parquet(out) else CsvRows)(
                    stack.enter_context(atomic_path(out)), columns(rows) + MODEL_COLUMNS, stack)
            sink.write([{**r, **ending} for r in rows])
            labels.update(r["label"] for r in rows)
            not_photos += sum(r.get(PHOTO) == "no" for r in rows)
        if sink is not None:
            sink.finish()
    counts = {"scored": sum(labels.values()), "skipped": len(skipped), "not_photos": not_photos,
              "labels": dict(sorted(labels.items()))}
    return counts, skipped


def sidecar_path(out):
    """Where predict writes what ``out`` was made from: <out>.json."""
    return Path(f"{out}.json")


def utc_now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_sidecar(out, model, counts, threshold, flip_average, started, finished, uncertain_band=0.0):
    """<out>.json (atomically): the model's identity, the settings the rows were scored with, ``counts`` (as
    ``write_predictions`` returns them), ``started`` and ``finished`` (``utc_now``), this package's version and
    ``out``'s name and format."""
    write_json(sidecar_path(out), {
        "model": model, "threshold": threshold, "uncertain_band": uncertain_band, "flip_average": bool(flip_average),
        "counts": counts, "started": started, "finished": finished, "package_version": __version__,
        "out": Path(out).name, "format": "parquet" if is_parquet(out) else "csv"})


def report_skipped(skipped, total, out=sys.stderr):
    if skipped:
        print(f"skipped {len(skipped)} of {total} files:", file=out)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=out)
