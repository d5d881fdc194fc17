
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
    findings = audit.audit(images, near_duplicate_bits=8, dark_below=0.06, blurry_below=65, min_side=64, max_aspect=3)
    assert [names(group) for group in findings["exact_duplicates"]] == [["cat.png", "cat_again.bmp"]]
    pairs = {tuple(names(n["paths"])): n for n in findings["near_duplicates"]}
    assert set(pairs) == {("cat.png", "cat_again.bmp"), ("rope.jpg", "snake.png")}
    assert pairs[("cat.png", "cat_again.bmp")]["exact"] and pairs[("cat.png", "cat_again.bmp")]["distance"] == 0
    assert not pairs[("rope.jpg", "snake.png")]["exact"]
    assert [names(n["paths"]) for n in findings["label_conflicts"]] == [["rope.jpg", "snake.png"]]
    flagged = {flag: names(i["path"] for i in items) for flag, items in findings["quality"].items()}
    assert flagged == {"dark": ["night.png"], "blurry": ["fog.png"], "tiny": ["stamp.png"], "odd_aspect": ["banner.png"]}
    assert audit.counts(findings) == {"images": 14, "exact_duplicate_sets": 1, "near_duplicate_pairs": 2,
                                      "label_conflicts": 1, "dark": 1, "blurry": 1, "tiny": 1, "odd_aspect": 1}


def test_threshold_zero_keeps_only_identical_hashes(images):
    findings = audit.audit(images, near_duplicate_bits=0, dark_below=0, blurry_below=0, min_side=1, max_aspect=100)
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
