"""Why a photo scores as it does: an occlusion map, for any classifier (Keras or LiteRT, no TensorFlow needed).

The photo is cut into a GRID × GRID grid of cells; a patch of PATCH × PATCH cells slides over it one cell at a
time, and each position is scored with that patch painted over in the photo's mean colour. A cell's value is
the mean, over the patches covering it, of P(Positive) of the photo minus P(Positive) with the patch covered:
positive where the region pushes P(Positive) up (covering it lowers the score), negative where it pushes it
down. Scoring goes through the classifier's ``probabilities`` (and flip averaging, as predict does), so the map
explains exactly the probability predict and serve report, from either model file, the same way. Cost: one
batch of (GRID − PATCH + 1)² + 1 = 50 images (twice that with flip averaging) per photo.

Why occlusion rather than gradients (Grad-CAM): it needs nothing but the model's output, so a LiteRT model on
a serving box without TensorFlow explains itself like the Keras file, and the default model (two backbones,
resized inside) has no single last feature map to take gradients at.
"""
import numpy as np

GRID = 8  # cells per side of the map
PATCH = 2  # cells per side of the covered patch
METHOD = f"occlusion: {PATCH}×{PATCH}-cell patches of a {GRID}×{GRID} grid in the photo's mean colour, stride one cell"
MARKER = "valence-explain"  # the PNG text chunk (its value: METHOD) that marks a map as explain's own to rewrite


def map_info():
    """The PNG text chunk that marks a sheet as one of explain's maps (``marked``)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(MARKER, METHOD)
    return info


def marked(path):
    """Whether ``path`` is a PNG with MARKER: a map explain wrote, which it may write again; never another file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and MARKER in image.info  # written before the pixels: no decoding
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def cell_edges(size):
    """Pixel edges of GRID cells along a side of ``size`` pixels."""
    return np.linspace(0, size, GRID + 1).round().astype(int)


def occluded(image):
    """(covered images, patch positions): ``image`` (H, W, 3) uint8 with each patch painted over."""
    rows, cols = cell_edges(image.shape[0]), cell_edges(image.shape[1])
    fill = image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    positions = [(r, c) for r in range(GRID - PATCH + 1) for c in range(GRID - PATCH + 1)]
    covered = np.repeat(image[None], len(positions), axis=0)
    for i, (r, c) in enumerate(positions):
        covered[i, rows[r]:rows[r + PATCH], cols[c]:cols[c + PATCH]] = fill
    return covered, positions


def occlusion_map(probability, covered_probability, positions):
    """(GRID, GRID) float32: per cell, the mean drop in P(Positive) over the patches covering it."""
    total, count = np.zeros((GRID, GRID)), np.zeros((GRID, GRID))
    for drop, (r, c) in zip(probability - np.asarray(covered_probability, dtype=float), positions):
        total[r:r + PATCH, c:c + PATCH] += drop
        count[r:r + PATCH, c:c + PATCH] += 1
    return (total / count).astype(np.float32)


def explain(score, image):
    """(P(Positive), map) of one uint8 ``image``; ``score`` maps a uint8 batch to P(Positive) (e.g.
    ``lambda batch: predict.score_images(classifier, batch, flip_average)``): the photo and every covered copy
    go in one batch."""
    covered, positions = occluded(image)
    scores = np.asarray(score(np.concatenate([image[None], covered])), dtype=float)
    return float(scores[0]), occlusion_map(scores[0], scores[1:], positions)


def colours(heat, limit):
    """RGB uint8 for map values: blue (pushes toward Negative) through white (0) to red (toward Positive)."""
    t = np.clip(np.asarray(heat, dtype=float) / limit, -1, 1)[..., None] if limit > 0 else np.zeros((*np.shape(heat), 1))
    white, red, blue = np.array([255, 255, 255]), np.array([200, 30, 30]), np.array([30, 70, 200])
    return np.where(t >= 0, white + t * (red - white), white - t * (blue - white)).round().astype(np.uint8)


def overlay(image, heat, limit=None, alpha=0.5):
    """``image`` (H, W, 3) uint8 with ``heat`` (GRID × GRID) drawn over it, smoothly upsampled; colour saturates
    at ``limit`` (default: the map's largest magnitude, so every map uses its full range)."""
    from PIL import Image

    limit = float(np.abs(heat).max()) if limit is None else limit
    height, width = image.shape[:2]
    grid = Image.fromarray(colours(heat, limit), "RGB").resize((width, height), Image.BILINEAR)
    return (np.asarray(image, dtype=float) * (1 - alpha) + np.asarray(grid, dtype=float) * alpha).round().astype(np.uint8)


def side_by_side(image, heat):
    """uint8: ``image`` and its ``overlay``, a white gap between."""
    gap = np.full((image.shape[0], max(2, image.shape[1] // 40), 3), 255, np.uint8)
    return np.concatenate([image, gap, overlay(image, heat)], axis=1)


def captioned(image, heat, caption):
    """``side_by_side`` under a caption line, as a PIL image (the explain command's PNGs)."""
    from PIL import Image, ImageDraw

    pair = side_by_side(image, heat)
    sheet = Image.new("RGB", (pair.shape[1], pair.shape[0] + 24), "white")
    sheet.paste(Image.fromarray(pair), (0, 24))
    ImageDraw.Draw(sheet).text((4, 6), caption, fill="black")
    return sheet
