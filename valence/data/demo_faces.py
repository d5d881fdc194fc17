"""A small synthetic demo dataset: smiling (Positive) vs frowning (Negative) faces, zipped in the
seed archive's class-folder layout, so the pipeline can run end to end without a network."""
import io
import zipfile

import numpy as np
from PIL import Image, ImageDraw

from valence.errors import PipelineError
from valence.files import atomic_path

CLASSES = ("Negative", "Positive")  # folder names, as valence.data.layouts.CLASSES expects
ROOT = "dataset 50:50"  # the seed archive's top folder, spaces and colon included
SUPERSAMPLE = 4  # draw big, then shrink: anti-aliased strokes keep tiny faces readable
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
BACKGROUND_GRID = 8  # the demo's background field: random values on an 8 × 8 grid, spread smoothly
BACKGROUND_AMPLITUDE = 100  # ± brightness levels the field adds to the background colour


def _colour(rng, lo, hi):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, size=3))


def _luma(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _smooth_field(rng, height, width, amplitude):
    """A smooth random brightness field (a few random values, bicubically spread): low frequencies only, so it
    moves a photo's perceptual hash without adding edges that could be taken for a face."""
    coarse = rng.uniform(-amplitude, amplitude, (BACKGROUND_GRID, BACKGROUND_GRID)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((width, height), Image.BICUBIC))


def draw_face(rng, smiling, height, width, varied_background=False):
    """One face as an RGB uint8 array of shape (height, width, 3). ``varied_background``: a smooth random
    brightness field behind the face, so that thousands of faces are not near-copies of each other under the
    audit's pHash (a plain background leaves only the face's place and size to tell them apart)."""
    s = SUPERSAMPLE
    H, W = height * s, width * s
    face = _colour(rng, 150, 255)
    ink = _colour(rng, 0, 70)
    # Redraw the background until it stands apart from the face, so the head outline is visible.
    while abs(_luma(bg := _colour(rng, 0, 255)) - _luma(face)) < 60:
        pass
    if varied_background:
        field = _smooth_field(rng, H, W, BACKGROUND_AMPLITUDE)[:, :, None]
        background = Image.fromarray(np.clip(np.array(bg, np.float32) + field, 0, 255).astype(np.uint8), "RGB")
    r = rng.uniform(0.30, 0.46) * min(H, W)
    # At most 15% of the radius may fall outside the frame; eyes and mouth always stay inside.
    cx = rng.uniform(0.85 * r, W - 0.85 * r)
    cy = rng.uniform(0.85 * r, H - 0.85 * r)
    lw = max(s, round(rng.uniform(0.07, 0.12) * r))  # at least one output pixel wide

    img = background if varied_background else Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(img)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=face, outline=ink, width=lw)
    er = max(0.09 * r, s)
    for ex in (cx - 0.35 * r, cx + 0.35 * r):
        ey = cy - 0.25 * r
        d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=ink)
    # Smile: lower half of an ellipse high in the face; frown: upper half of one lower down.
    mw, mh = 0.5 * r, 0.32 * r
    my, (start, end) = (cy + 0.15 * r, (15, 165)) if smiling else (cy + 0.55 * r, (195, 345))
    d.arc([cx - mw, my - mh, cx + mw, my + mh], start, end, fill=ink, width=lw)

    small = np.asarray(img.resize((width, height), Image.LANCZOS), dtype=np.float64)
    noisy = small + rng.normal(0.0, rng.uniform(2.0, 8.0), small.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _jpeg(pixels):
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_demo_archive(path, images_per_class: int, height: int, width: int, seed: int) -> None:
    """Write a zip at `path` in the class-folder layout:
       'dataset 50:50/Negative/face 001.jpg' ... and 'dataset 50:50/Positive/face 001.jpg' ...
    """
    if images_per_class < 2:
        raise PipelineError(f"demo dataset needs at least 2 images per class, got {images_per_class}")
    if height < 16 or width < 16:
        raise PipelineError(f"demo images must be at least 16x16 pixels, got {height}x{width}")
    rng = np.random.default_rng(seed)
    digits = max(3, len(str(images_per_class)))
    members = {}
    for label in CLASSES:
        for i in range(1, images_per_class + 1):
            pixels = draw_face(rng, label == "Positive", height, width, varied_background=True)
            members[f"{ROOT}/{label}/face {i:0{digits}d}.jpg"] = _jpeg(pixels)

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(members):
            # Fixed metadata, so the same arguments give the same bytes on every machine.
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, members[name])
