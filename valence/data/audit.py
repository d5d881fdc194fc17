"""Data audit: exact and near-duplicate images, label conflicts among them, and quality flags.

Near-copies on both sides of a split let a model score by recognising a photo it trained on, so the split
stage joins every near-duplicate pair found here into one group. Perceptual hashes come from ImageHash
(pHash: the low frequencies of a 32×32 DCT, 64 bits); two images whose hashes differ in at most
``near_duplicate_bits`` bits are near-duplicates. Exact duplicates have identical decoded pixels (unzip already
drops byte-identical files; this catches re-encoded copies).
"""
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import imagehash
import numpy as np
from tqdm import tqdm

from valence.data.images import decode
from valence.errors import PipelineError
from valence.runtime import cores

BLUR_SIDE = 256  # images are shrunk to this longer side before the blur measure, so it does not depend on size


def sharpness(gray):
    """Variance of the 4-neighbour Laplacian of a grayscale image in 0–255: low means blurry or flat."""
    g = np.asarray(gray, dtype=np.float32)
    laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(laplacian.var())


def fingerprint(path):
    """{path, width, height, brightness 0–1, sharpness, pixel digest, 64-bit pHash as booleans} of one image."""
    try:
        image = decode(path)
    except ValueError as err:
        raise PipelineError(f"{path}: {err}") from None
    gray = image.convert("L")
    small = gray.copy()
    small.thumbnail((BLUR_SIDE, BLUR_SIDE))
    digest = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
    bits = imagehash.phash(image).hash.flatten()
    return {"path": str(path), "width": image.width, "height": image.height,
            "brightness": round(float(np.asarray(gray).mean()) / 255, 4), "sharpness": round(sharpness(small), 1),
            "digest": digest, "phash": bits}


def fingerprints(paths):
    """Fingerprints of all images, decoded on one thread per core, with a progress bar."""
    with ThreadPoolExecutor(cores()) as pool:
        return list(tqdm(pool.map(fingerprint, paths), total=len(paths), desc="auditing", unit="img"))


def hamming_distances(bits):
    """(n, n) numbers of differing bits between (n, 64) boolean hashes."""
    b = np.asarray(bits, dtype=np.float32)
    return np.rint(b @ (1 - b).T + (1 - b) @ b.T).astype(int)


def audit(rows, near_duplicate_bits, dark_below, blurry_below, min_side, max_aspect):
    """Findings for the labels table ``rows`` (path, label, …): a dict ready for data/audit.json."""
    prints = fingerprints([r["path"] for r in rows])
    label = {r["path"]: r["label"] for r in rows}
    by_digest = {}
    for f in prints:
        by_digest.setdefault(f["digest"], []).append(f["path"])
    exact = [sorted(paths) for paths in by_digest.values() if len(paths) > 1]
    exact_pairs = {frozenset((a, b)) for paths in exact for a in paths for b in paths if a < b}
    distance = hamming_distances([f["phash"] for f in prints]) if prints else np.zeros((0, 0), int)
    near = []
    for i, j in zip(*np.nonzero(np.triu(distance <= near_duplicate_bits, k=1))):
        a, b = prints[i]["path"], prints[j]["path"]
        near.append({"paths": [a, b], "labels": [label[a], label[b]], "distance": int(distance[i, j]),
                     "exact": frozenset((a, b)) in exact_pairs})
    near.sort(key=lambda n: (n["distance"], n["paths"]))
    quality = {"dark": [], "blurry": [], "tiny": [], "odd_aspect": []}
    for f in prints:
        short, long = sorted((f["width"], f["height"]))
        tests = {"dark": (f["brightness"] < dark_below, f"mean brightness {f['brightness']}"),
                 "blurry": (f["sharpness"] < blurry_below, f"Laplacian variance {f['sharpness']}"),
                 "tiny": (short < min_side, f"{f['width']}×{f['height']}"),
                 "odd_aspect": (long / short > max_aspect, f"{f['width']}×{f['height']}")}
        for flag, (hit, why) in tests.items():
            if hit:
                quality[flag].append({"path": f["path"], "label": label[f["path"]], "why": why})
    return {"images": len(rows), "exact_duplicates": exact, "near_duplicates": near,
            "label_conflicts": [n for n in near if n["labels"][0] != n["labels"][1]], "quality": quality}


def counts(findings):
    """The numbers for metrics/audit.json."""
    return {"images": findings["images"], "exact_duplicate_sets": len(findings["exact_duplicates"]),
            "near_duplicate_pairs": len(findings["near_duplicates"]),
            "label_conflicts": len(findings["label_conflicts"]),
            **{flag: len(items) for flag, items in findings["quality"].items()}}


def near_duplicate_pairs(path):
    """[(path, path)] of every near-duplicate pair (exact ones included) in a data/audit.json."""
    try:
        return [tuple(n["paths"]) for n in json.loads(open(path).read())["near_duplicates"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PipelineError(f"{path}: cannot read the near-duplicate pairs ({type(err).__name__}); "
                            "run the audit stage") from None
