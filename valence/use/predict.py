"""P(Positive) for photos: scoring with flip averaging (fold, export, predict, serve), and the predict
command's files and folders in, one CSV row per image out.

    python -m valence predict photos/ beach.jpg --out predictions.csv [--model models/model.keras]

Images go through training's own preprocessing (`images.decode`, then `images.model_input`), so an image
from the test split gets the probability evaluate wrote for it. Files that are not usable images are listed
and skipped; the run goes on.
"""
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valence.data.images import decode, model_input
from valence.data.labels import label_of
from valence.errors import PipelineError
from valence.runtime import cores

COLUMNS = ["path", "probability", "label"]


def image_files(paths):
    """The files named, then every file under the folders named (recursively, sorted; hidden names skipped)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            files.append(path)
        else:
            raise PipelineError(f"{path}: no such file or folder")
    if not files:
        raise PipelineError(f"no files to predict on in {', '.join(map(str, paths)) or '(no paths given)'}")
    return files


def load_photo(path, height, width):
    """(pixels, None) for a usable image, (None, reason) for anything else."""
    try:
        return model_input(decode(path), height, width), None
    except ValueError as err:
        return None, str(err)


def score_images(classifier, batch, flip_average=False):
    """P(Positive) for a uint8 batch; with ``flip_average``, the mean over each image and its mirror image."""
    probability = classifier.probabilities(batch)
    if flip_average:
        probability = (probability + classifier.probabilities(batch[:, :, ::-1])) / 2
    return probability


def score_batches(classifier, images, batch_size, flip_average=False, desc="scoring"):
    """``score_images`` over a uint8 array of any length, ``batch_size`` images at a time, with a progress bar."""
    starts = range(0, len(images), batch_size)
    return np.concatenate([score_images(classifier, images[i:i + batch_size], flip_average)
                           for i in tqdm(starts, desc=desc, unit="batch")])


def predict_files(classifier, files, batch_size=64, threshold=0.5, flip_average=False, progress=True):
    """Rows (path, probability, label) for the files that are images, and (path, reason) for those skipped.

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
                probability = score_images(classifier, np.stack([pixels for _, pixels in good]), flip_average)
                rows += [{"path": str(f), "probability": round(float(p), 6), "label": label_of(p, threshold)}
                         for (f, _), p in zip(good, probability)]
            bar.update(len(chunk))
    return rows, skipped


def report_skipped(skipped, total, out=sys.stderr):
    if skipped:
        print(f"skipped {len(skipped)} of {total} files:", file=out)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=out)
