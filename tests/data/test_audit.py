
import json

import imagehash
import numpy as np
import pytest
from PIL import Image

from valence.data import audit
from valence.errors import PipelineError


def noise(seed, width=96, height=80, low=0, high=256):
    """A distinct, sharp image: seeded noise, smoothed a little so pHash sees structure."""
    rng = np.random.default_rng(seed)
    small = rng.integers(low, high, (height // 8, width // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST)


def save(image, path, fmt=None):
    image.save(path, format=fmt)
    return {"path": str(path)}


@pytest.fixture
def images(tmp_path):
    rows = []
    for i in range(6):
        rows.append({**save(noise(i), tmp_path / f"distinct{i}.png"), "label": "Positive" if i % 2 else "Negative"})
    original = noise(100)
    rows.append({**save(original, tmp_path / "snake.png"), "label": "Negative"})
    brighter = Image.fromarray(np.clip(np.asarray(original, dtype=int) + 12, 0, 255).astype(np.uint8))
    rows.append({**save(brighter, tmp_path / "rope.jpg", "JPEG"), "label": "Positive"})  # near-copy, other label
    rows.append({**save(noise(200), tmp_path / "cat.png"), "label": "Positive"})
    rows.append({**save(noise(200), tmp_path / "cat_again.bmp", "BMP"), "label": "Positive"})  # same pixels, other file
    night = np.zeros((80, 96, 3), np.uint8)
    night[::32], night[:, ::32] = 128, 128  # dark, but with sharp lines: not blurry
    rows.append({**save(Image.fromarray(night), tmp_path / "night.png"), "label": "Negative"})
    rows.append({**save(Image.new("RGB", (96, 80), (120, 130, 140)), tmp_path / "fog.png"), "label": "Negative"})
    rows.append({**save(noise(400, width=40, height=30), tmp_path / "stamp.png"), "label": "Positive"})
    rows.append({**save(noise(500, width=400, height=80), tmp_path / "banner.png"), "label": "Positive"})
    return rows


def names(paths):
    return sorted(p.rsplit("/", 1)[-1] for p in paths)


def test_audit_finds_duplicates_conflicts_and_quality_flags(images):
    findings, clustered = audit.audit(images, near_duplicate_bits=8, dark_below=0.06, blurry_below=65, min_side=64,
                                      max_aspect=3)
    assert [(s["images"], names(s["paths"])) for s in findings["exact_duplicates"]] == [(2, ["cat.png", "cat_again.bmp"])]
    pairs = {tuple(names(n["paths"])): n for n in findings["near_duplicates"]}
    assert set(pairs) == {("cat.png", "cat_again.bmp"), ("rope.jpg", "snake.png")}
    assert pairs[("cat.png", "cat_again.bmp")]["exact"] and pairs[("cat.png", "cat_again.bmp")]["distance"] == 0
    assert not pairs[("rope.jpg", "snake.png")]["exact"]
    assert [names(n["paths"]) for n in findings["label_conflicts"]] == [["rope.jpg", "snake.png"]]
    flagged = {flag: names(i["path"] for i in items) for flag, items in findings["quality"].items()}
    assert flagged == {"dark": ["night.png"], "blurry": ["fog.png"], "tiny": ["stamp.png"], "odd_aspect": ["banner.png"]}
    assert audit.counts(findings) == {"images": 14, "exact_duplicate_sets": 1, "near_duplicate_pairs": 2,
                                      "label_conflicts": 1, "near_duplicate_clusters": 2, "largest_cluster": 2,
                                      "dark": 1, "blurry": 1, "tiny": 1, "odd_aspect": 1}
    # every clustered image, beside its representative: the first of the cluster in path order
    assert [(names([r["path"]]), names([r["representative"]]), r["distance"]) for r in clustered] == [
        (["cat.png"], ["cat.png"], 0), (["cat_again.bmp"], ["cat.png"], 0), (["rope.jpg"], ["rope.jpg"], 0),
        (["snake.png"], ["rope.jpg"], pairs[("rope.jpg", "snake.png")]["distance"])]
    assert [(c["images"], c["Negative"], c["Positive"]) for c in findings["clusters"]] == [(2, 0, 2), (2, 1, 1)]


def test_threshold_zero_keeps_only_identical_hashes(images):
    findings, _ = audit.audit(images, near_duplicate_bits=0, dark_below=0, blurry_below=0, min_side=1, max_aspect=100)
    assert [names(n["paths"]) for n in findings["near_duplicates"]] == [["cat.png", "cat_again.bmp"]]
    assert not findings["label_conflicts"] and not any(findings["quality"].values())


def test_hamming_distances_match_imagehash(images):
    hashes = [imagehash.phash(Image.open(r["path"]).convert("RGB")) for r in images]
    distances = audit.hamming_distances([h.hash.flatten() for h in hashes])
    expected = np.array([[a - b for b in hashes] for a in hashes])
    assert (distances == expected).all()


def test_sharpness_is_zero_for_flat_images_and_grows_with_edges():
    flat = np.full((20, 20), 90)
    edges = np.tile([0, 255], (20, 10))
    assert audit.sharpness(flat) == 0 and audit.sharpness(edges) > 1000


def test_unreadable_image_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(PipelineError, match="broken.jpg: not an image"):
        audit.audit([{"path": str(path), "label": "Positive"}], 8, 0.06, 65, 64, 3)


def clusters_by_definition(bits, threshold):
    """The definition, pair by pair: each image joins the nearest earlier representative within the threshold
    (ties: the earliest), else represents a new cluster."""
    distance = audit.hamming_distances(bits)
    leaders, leader, to_leader = [], list(range(len(bits))), [0] * len(bits)
    for i in range(len(bits)):
        if leaders and distance[i, leaders].min() <= threshold:
            leader[i] = leaders[int(distance[i, leaders].argmin())]
            to_leader[i] = int(distance[i, leaders].min())
        else:
            leaders.append(i)
    return leader, to_leader


@pytest.mark.parametrize("block, chunk", [(512, 16384), (7, 5)])  # blocks and chunks must not change the answer
def test_clusters_follow_their_definition_at_any_block_size(monkeypatch, block, chunk):
    monkeypatch.setattr(audit, "BLOCK", block)
    monkeypatch.setattr(audit, "CHUNK", chunk)
    rng = np.random.default_rng(1)
    centres = rng.integers(0, 2, (20, 64)).astype(bool)
    bits = centres[rng.integers(0, 20, 600)] ^ (rng.random((600, 64)) < 0.06)  # 20 families of noisy copies
    leader, distance = audit.clusters(audit.packed(bits), 8)
    expected_leader, expected_distance = clusters_by_definition(bits, 8)
    assert leader.tolist() == expected_leader and distance.tolist() == expected_distance
    assert 20 <= len(set(expected_leader)) < 600


def test_a_chain_of_near_copies_does_not_join_unrelated_photos():
    """Hash i differs from hash i + 1 in one bit and from hash 0 in i bits: single linkage at 8 bits would join
    all 64 into one group, though the ends differ in 63 bits."""
    bits = np.tril(np.ones((64, 64), bool), k=-1)
    leader, distance = audit.clusters(audit.packed(bits), 8)
    assert distance.max() <= 8 and len(set(leader.tolist())) >= 7
    pairwise = audit.hamming_distances(bits)
    for representative in set(leader.tolist()):
        members = np.flatnonzero(leader == representative)
        assert pairwise[np.ix_(members, members)].max() <= 16  # a cluster spans at most twice the bits


def test_the_audit_of_many_identical_images_stays_small(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "LISTED", 20)
    rows = [{**save(noise(7), tmp_path / f"copy{i:03d}.png"), "label": "Positive" if i % 3 else "Negative"}
            for i in range(300)]
    findings, clustered = audit.audit(rows, 8, 0.06, 65, 64, 3)
    counts = audit.counts(findings)
    assert counts["near_duplicate_pairs"] == 299 and counts["largest_cluster"] == 300
    assert counts["exact_duplicate_sets"] == 1 and counts["label_conflicts"] == 200  # the Negative copies
    assert len(findings["near_duplicates"]) == len(findings["label_conflicts"]) == 20
    assert len(findings["exact_duplicates"]) == 1 and len(clustered) == 300
    assert len(json.dumps(findings)) < 20_000  # what is listed is capped; the CSV has every clustered image
