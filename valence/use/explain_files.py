"""The explain command's files: which maps it may write where, and writing them.

    valence explain photos/ beach.jpg --out explained/     # <photo>.png and <photo>.json per image

Nothing of the user's is written over: every <name>.png and <name>.json is checked before any is written, and
one that is a photo being read, or a file that is not one of explain's own earlier maps (a PNG with
valence.use.explain's MARKER, a JSON of exactly its keys), stops the run in one line. Its own earlier maps are
rewritten, and not explained again when --out is the photos' folder.
"""
import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valence import config
from valence.data.images import decode
from valence.data.labels import label_of
from valence.errors import PipelineError
from valence.files import atomic_path, write_json
from valence.runtime import cores
from valence.use.explain import LEGEND, captioned, drawn, explain_batch, map_info, marked, method
from valence.use.predict import is_url, load_photo, read_url


def earlier_map(path):
    """Whether ``path`` is a map file explain_files wrote: a PNG with explain's MARKER, or a JSON of exactly its
    keys. Those it may write again; anything else in --out is the user's."""
    if str(path).endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                found = json.load(f)
        except (OSError, ValueError):
            return False
        return isinstance(found, dict) and set(found) == {"path", config.PROBABILITY, "label", "method", "map"}
    return marked(path)


def without_earlier_maps(files, out):
    """(``files`` less the maps an earlier explain wrote straight into ``out``, how many were left out): with --out
    inside a folder read, a map explained again would only be written over."""
    if not Path(out).is_dir():
        return files, 0
    home, where = Path(out).resolve(), lru_cache(maxsize=None)(lambda folder: Path(folder).resolve())
    kept = [f for f in files if is_url(f) or where(str(Path(f).parent)) != home or not earlier_map(f)]
    return kept, len(files) - len(kept)


def plan_maps(files, out):
    """([(image file, the name of its map)], [(path, reason) skipped]): the <name>.png and <name>.json in ``out``
    that explain_files writes, each checked before anything is: a one-line error names the first that would
    replace one of the photos, or a file that is not one of explain's own maps (``earlier_map``)."""
    def unusable(file):  # decoded in full as explain_files will, so only images get names, as they always did
        try:
            decode(read_url(file) if is_url(file) else file)
        except ValueError as err:
            return str(err)

    with ThreadPoolExecutor(cores()) as pool:
        reasons = list(pool.map(unusable, files))
    named, skipped, used = [], [], set()
    for file, reason in zip(files, reasons):
        if reason is not None:
            skipped.append((str(file), reason))
            continue
        name = Path(file).stem
        while name in used:  # photos of one name from several folders
            name += "_"
        used.add(name)
        named.append((file, name))
    out = Path(out)
    if os.path.lexists(out) and not out.is_dir():
        raise PipelineError(f"{out}: not a folder; --out names the folder for the maps")
    if not out.is_dir():
        return named, skipped
    where = lru_cache(maxsize=None)(lambda folder: Path(folder).resolve())
    inputs = {where(str(Path(f).parent)) / Path(f).name for f in files if not is_url(f)}
    for _, name in named:
        for target in (out / f"{name}.png", out / f"{name}.json"):
            if not os.path.lexists(target):
                continue
            if where(str(out)) / target.name in inputs:
                raise PipelineError(f"{target}: --out would replace one of the photos to explain; choose another "
                                    "--out")
            if not earlier_map(target):
                raise PipelineError(f"{target}: already there and not a map of valence explain; move it, or choose "
                                    "another --out")
    return named, skipped


CHUNK = 16  # photos explained in one batch (a class activation map costs what scoring does)


def explain_files(classifier, named, out, threshold=0.5, flip_average=False, band=0.0):
    """For each (image file, name) of ``plan_maps``: ``out``/<name>.png (the photo beside its map, captioned,
    marked as explain's) and <name>.json (path, probability, label, method, the map's rows: valence.use.explain).
    Returns (rows written, (path, reason) skipped: files no longer readable since plan_maps)."""
    out, how = Path(out), method(classifier)
    rows, skipped = [], []
    with ThreadPoolExecutor(cores()) as pool, tqdm(total=len(named), desc="explaining", unit="img") as bar:
        for start in range(0, len(named), CHUNK):
            chunk = named[start:start + CHUNK]
            loaded = list(pool.map(lambda item: load_photo(item[0], classifier.height, classifier.width), chunk))
            skipped += [(str(file), reason) for (file, _), (_, reason) in zip(chunk, loaded) if reason is not None]
            good = [(item, pixels) for item, (pixels, _) in zip(chunk, loaded) if pixels is not None]
            if good:
                scores, maps = explain_batch(classifier, np.stack([pixels for _, pixels in good]), flip_average)
                for ((file, name), pixels), probability, heat in zip(good, scores[config.PROBABILITY], maps):
                    rows.append(write_map(out / name, file, pixels, float(probability), heat, how, threshold, band))
            bar.update(len(chunk))
    return rows, skipped


def write_map(stem, file, pixels, probability, heat, how, threshold, band=0.0):
    """<stem>.png and <stem>.json of one photo, each replaced whole; the JSON's row."""
    row = {"path": str(file), config.PROBABILITY: round(probability, 6), "label": label_of(probability, threshold, band),
           "method": how, "map": np.round(heat.astype(float), 6).tolist()}
    with atomic_path(stem.with_name(stem.name + ".png"), suffix=".png") as tmp:
        captioned(pixels, drawn(heat, how), f"P(Positive) {probability:.3f}: {row['label']}   {LEGEND[how]}").save(
            tmp, format="PNG", pnginfo=map_info(how))
    write_json(stem.with_name(stem.name + ".json"), row)
    return row
