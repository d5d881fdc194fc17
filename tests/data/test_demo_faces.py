import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from valence.data.demo_faces import write_demo_archive
from valence.errors import PipelineError


def read_images(path):
    """{class name: [grayscale float array, ...]} in member order."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            img = Image.open(io.BytesIO(zf.read(name)))
            out.setdefault(name.split("/")[1], []).append(np.asarray(img.convert("L"), dtype=float))
    return out


def test_layout(tmp_path):
    path = tmp_path / "demo.zip"
    write_demo_archive(path, images_per_class=3, height=32, width=40, seed=0)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert sorted(names) == names
        assert set(names) == {f"dataset 50:50/{c}/face {i:03d}.jpg"
                              for c in ("Negative", "Positive") for i in (1, 2, 3)}
        assert len(names) == 6
        for name in names:
            img = Image.open(io.BytesIO(zf.read(name)))
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (40, 32))
    assert [p.name for p in tmp_path.iterdir()] == ["demo.zip"]  # no temp file left behind


def test_deterministic(tmp_path):
    a, b, c = tmp_path / "a.zip", tmp_path / "b.zip", tmp_path / "c.zip"
    write_demo_archive(a, 4, 32, 40, seed=7)
    write_demo_archive(b, 4, 32, 40, seed=7)
    write_demo_archive(c, 4, 32, 40, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def face_features(gray, n=16):
    """Edge map resampled on an n x n grid centred on the face and scaled to its size.

    Faces move, grow and change colour from image to image; the strong edges (outline, eyes,
    mouth) give the face's centre and size, so the grid lines up the mouths of all images.
    """
    edges = np.hypot(*np.gradient(gray))
    strong = edges > 0.3 * edges.max()
    ys, xs = np.nonzero(strong)
    cy, cx = ys.mean(), xs.mean()
    rho = np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).mean())
    t = np.linspace(-0.9, 0.9, n) * rho
    rows = np.clip(np.rint(cy + t), 0, gray.shape[0] - 1).astype(int)
    cols = np.clip(np.rint(cx + t), 0, gray.shape[1] - 1).astype(int)
    return strong[np.ix_(rows, cols)].astype(float).ravel()


def test_classes_are_learnable(tmp_path):
    # Nearest-centroid on face-aligned edges, fit on one seed and scored on another: identical
    # classes would score about 0.5; smiles vs frowns score near 1.
    train, test = tmp_path / "train.zip", tmp_path / "test.zip"
    write_demo_archive(train, 40, 48, 60, seed=1)
    write_demo_archive(test, 40, 48, 60, seed=2)
    centroids = {c: np.mean([face_features(g) for g in imgs], axis=0)
                 for c, imgs in read_images(train).items()}
    hits = total = 0
    for label, imgs in read_images(test).items():
        for g in imgs:
            f = face_features(g)
            hits += min(centroids, key=lambda c: ((f - centroids[c]) ** 2).sum()) == label
            total += 1
    assert total == 80
    assert hits / total >= 0.85


@pytest.mark.parametrize("n, h, w", [(1, 32, 40), (0, 32, 40), (2, 15, 40), (2, 32, 15)])
def test_bad_arguments(tmp_path, n, h, w):
    path = tmp_path / "demo.zip"
    with pytest.raises(PipelineError):
        write_demo_archive(path, n, h, w, seed=0)
    assert not path.exists()
