"""P(Positive) for photos: scoring with flip averaging (fold, export, predict, serve), and the predict
command's files and folders in, one CSV row per image out.

    python -m valence predict photos/ beach.jpg --out predictions.csv [--model models/model.tflite]

Images go through training's own preprocessing (`images.decode`, then `images.model_input`), so an image
from the test split gets the probability evaluate wrote for it. Files that are not usable images are listed
and skipped; the run goes on.

A path may also be a URL fsspec reads, such as s3://bucket/photos/ (s3fs comes with dvc-s3; credentials and
endpoint from the usual AWS_* variables or ~/.aws): the objects under it are listed and read like files, and
one that cannot be read is skipped with the reason.
"""
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valence.data.images import decode, model_input
from valence.config import LOGIT_MAP, PHOTO, PHOTO_LINE, PHOTO_SCORE, PROBABILITY
from valence.data.labels import RATINGS, label_of
from valence.errors import PipelineError, first_line
from valence.runtime import cores

COLUMNS = ["path", PROBABILITY, "label"]  # then the model's ratings, where it learnt some (``columns``)
PHOTO_COLUMNS = [PHOTO_SCORE, PHOTO]  # the photo check's score and its verdict, where the model has one


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


def predict_files(classifier, files, batch_size=64, threshold=0.5, flip_average=False, progress=True):
    """Rows (path, probability, label and the model's ratings) for the files that are images, and (path, reason)
    for those skipped.

    Files are decoded a batch at a time, in one thread per core, so memory stays flat over large folders.
    """
    rows, skipped = [], []
    with ThreadPoolExecutor(cores()) as pool, tqdm(total=len(files), desc="predicting", unit="img",
                                                   disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            loaded = list(pool.map(lambda f: load_photo(f, classifier.height, classifier.width), chunk))
            good = [(f, pixels) for f, (pixels, _) in zip(chunk, loaded) if pixels is not None]
            skipped += [(str(f), reason) for f, (_, reason) in zip(chunk, loaded) if reason is not None]
            if good:
                scores = score_all(classifier, np.stack([pixels for _, pixels in good]), flip_average)
                rows += [{"path": str(f), PROBABILITY: round(float(p), 6), "label": label_of(p, threshold),
                          **values_beside_probability(classifier, scores, i)}
                         for i, ((f, _), p) in enumerate(zip(good, scores[PROBABILITY]))]
            bar.update(len(chunk))
    return rows, skipped


def report_skipped(skipped, total, out=sys.stderr):
    if skipped:
        print(f"skipped {len(skipped)} of {total} files:", file=out)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=out)
