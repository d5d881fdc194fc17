"""Data audit: exact and near-duplicate images, label conflicts among them, and quality flags, in memory and
time that stay bounded at 100,000 photos.

Near-copies on both sides of a split let a model score by recognising a photo it trained on, so the split
stage puts each near-duplicate cluster in one group. Perceptual hashes come from ImageHash (pHash: the low
frequencies of a 32×32 DCT, 64 bits, packed into one uint64); two images whose hashes differ in at most
``near_duplicate_bits`` bits are near-duplicates. Clusters form around a representative, images in path
order: an image joins the cluster of the nearest representative within the bits, else it represents a new
cluster. So every member is a near-copy of its representative and a cluster spans at most twice the bits;
chains of neighbours (burst shots, video frames, thousands of similar faces) never join unrelated photos
into one giant group, as linking every near pair would. Exact duplicates have identical decoded pixels (unzip
already drops byte-identical files; this catches re-encoded copies).

data/audit.json lists at most LISTED items of each kind (the totals are in its counts); every clustered
image is in data/near_duplicates.csv.
"""
import hashlib
from concurrent.futures import ThreadPoolExecutor

import imagehash
import numpy as np
from tqdm import tqdm

from valence.data.images import decode
from valence.data.labels import CLASSES
from valence.errors import PipelineError
from valence.files import read_csv
from valence.runtime import cores

BLUR_SIDE = 256  # images are shrunk to this longer side before the blur measure, so it does not depend on size
LISTED = 200  # items of each kind data/audit.json lists (pairs, conflicts, clusters, flagged photos)
BLOCK = 512  # images compared at once: memory ≈ BLOCK × CHUNK × 8 bytes
CHUNK = 16384  # representatives compared at once
CLUSTER_COLUMNS = ["path", "label", "representative", "distance"]


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


def packed(bits):
    """(n, 64) boolean hashes → (n,) uint64."""
    b = np.asarray(bits, dtype=bool).reshape(len(bits), 64)
    return np.packbits(b, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming_distances(bits):
    """(n, n) numbers of differing bits between (n, 64) boolean hashes (small n: tests and reports)."""
    h = packed(bits)
    return np.bitwise_count(h[:, None] ^ h[None, :]).astype(int)


def _nearest(hashes, leaders):
    """(index of the nearest leader, its distance) for each hash, comparing CHUNK leaders at a time."""
    best, best_distance = np.full(len(hashes), -1), np.full(len(hashes), 65)
    for start in range(0, len(leaders), CHUNK):
        distance = np.bitwise_count(hashes[:, None] ^ leaders[None, start:start + CHUNK])
        nearest = distance.argmin(axis=1)
        nearest_distance = np.take_along_axis(distance, nearest[:, None], axis=1)[:, 0]
        closer = nearest_distance < best_distance  # ties keep the earlier chunk's, so the earliest leader
        best[closer], best_distance[closer] = nearest[closer] + start, nearest_distance[closer]
    return best, best_distance


def clusters(hashes, bits):
    """(leader index, distance to it) of each packed hash, in order: an image joins the nearest earlier
    representative within ``bits`` (ties: the earliest), else represents a new cluster (itself, distance 0)."""
    leaders = []  # indices of the representatives, in order
    leader, distance = np.arange(len(hashes)), np.zeros(len(hashes), int)
    blocks = range(0, len(hashes), BLOCK)
    for start in tqdm(blocks, desc="near-duplicates", unit="block", disable=len(blocks) < 10):
        block = hashes[start:start + BLOCK]
        nearest, near = _nearest(block, hashes[leaders]) if leaders else (np.full(len(block), -1), np.full(len(block), 65))
        nearest = [leaders[n] if n >= 0 else -1 for n in nearest]
        before = len(leaders)
        for k, i in enumerate(range(start, start + len(block))):  # representatives this block added count too
            if len(leaders) > before:
                added = leaders[before:]
                d = np.bitwise_count(hashes[added] ^ hashes[i])
                if d.min() < near[k]:
                    nearest[k], near[k] = added[int(d.argmin())], int(d.min())
            if near[k] <= bits:
                leader[i], distance[i] = nearest[k], near[k]
            else:
                leaders.append(i)
    return leader, distance


def audit(rows, near_duplicate_bits, dark_below, blurry_below, min_side, max_aspect):
    """(findings for data/audit.json, cluster rows for data/near_duplicates.csv) of the labels table ``rows``."""
    rows = sorted(rows, key=lambda r: r["path"])
    prints = fingerprints([r["path"] for r in rows])
    label = {r["path"]: r["label"] for r in rows}
    by_digest = {}
    for f in prints:
        by_digest.setdefault(f["digest"], []).append(f["path"])
    exact = sorted((sorted(paths) for paths in by_digest.values() if len(paths) > 1), key=lambda p: (-len(p), p))
    hashes = packed([f["phash"] for f in prints]) if prints else np.zeros(0, np.uint64)
    leader, distance = clusters(hashes, near_duplicate_bits)
    paths = [f["path"] for f in prints]
    digest = {f["path"]: f["digest"] for f in prints}
    near = [{"paths": [paths[leader[i]], paths[i]], "labels": [label[paths[leader[i]]], label[paths[i]]],
             "distance": int(distance[i]), "exact": digest[paths[i]] == digest[paths[leader[i]]]}
            for i in np.flatnonzero(leader != np.arange(len(paths)))]
    near.sort(key=lambda n: (n["distance"], n["paths"]))
    conflicts = [n for n in near if n["labels"][0] != n["labels"][1]]
    members = {}
    for i, j in enumerate(leader):
        members.setdefault(int(j), []).append(i)
    groups = sorted(([paths[i] for i in group] for group in members.values() if len(group) > 1), key=lambda g: (-len(g), g))
    cluster_rows = sorted(({"path": paths[i], "label": label[paths[i]], "representative": paths[leader[i]],
                            "distance": int(distance[i])} for group in members.values() if len(group) > 1 for i in group),
                          key=lambda r: r["path"])
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
    totals = {"images": len(rows), "exact_duplicate_sets": len(exact), "near_duplicate_pairs": len(near),
              "label_conflicts": len(conflicts), "near_duplicate_clusters": len(groups),
              "largest_cluster": len(groups[0]) if groups else 1, **{flag: len(items) for flag, items in quality.items()}}
    findings = {"counts": totals, "listed_at_most": LISTED,
                "exact_duplicates": [{"images": len(s), "paths": s[:10]} for s in exact[:LISTED]],  # first 10 of each
                "near_duplicates": near[:LISTED], "label_conflicts": conflicts[:LISTED],
                "clusters": [{"representative": g[0], "images": len(g),  # a representative precedes its members
                              **{c: sum(label[p] == c for p in g) for c in CLASSES}} for g in groups[:LISTED]],
                "quality": {flag: items[:LISTED] for flag, items in quality.items()}}
    return findings, cluster_rows


def counts(findings):
    """The numbers for metrics/audit.json."""
    return dict(findings["counts"])


def near_duplicate_pairs(path):
    """[(representative, path)] of every clustered image but the representatives, from data/near_duplicates.csv:
    joining these pairs gives exactly the audit's clusters."""
    return [(r["representative"], r["path"]) for r in read_csv(path, required=CLUSTER_COLUMNS)
            if r["representative"] != r["path"]]
