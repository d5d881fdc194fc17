"""Why a photo scores as it does: a map over the photo, from any classifier (Keras or LiteRT, no TensorFlow needed).

Two methods, one shape (``explain_batch``):

- The frozen release gives it in the pass that scores the photo: its LOGIT_MAP output (valence.learn.heads.
  logit_map), P(Positive)'s logit cell by cell, a class activation map. The model is linear on average-pooled
  feature maps, so the cells add up to the logit exactly: an account of the score, not an estimate of it. With
  flip averaging, the mean of the photo's map and its mirror's mirrored back (summing to the two logits' mean).
  Drawn centred on the photo's own mean cell: red regions raise the score more than its average region does.
- Any other model (trained on images, or a file from before LOGIT_MAP): occlusion. The photo is cut into a
  GRID × GRID grid of cells; a patch of PATCH × PATCH cells slides over it one cell at a time, and each position
  is scored with that patch painted over in the photo's mean colour. A cell's value is the mean, over the patches
  covering it, of P(Positive) of the photo minus P(Positive) with the patch covered: positive where the region
  pushes P(Positive) up. Cost: (GRID − PATCH + 1)² + 1 = 50 images (twice that with flip averaging) per photo.

Both score through the classifier and flip averaging as predict does, so a map explains the probability predict
and serve report, from either model file. docs/performance.md compares them by a deletion test.
"""
import numpy as np

from valence.config import LOGIT_MAP, PROBABILITY
from valence.use.predict import score_all

GRID = 8  # cells per side of an occlusion map
PATCH = 2  # cells per side of the covered patch
OCCLUSION = f"occlusion: {PATCH}×{PATCH}-cell patches of a {GRID}×{GRID} grid in the photo's mean colour, stride one cell"
CLASS_ACTIVATION = ("class activation map: the P(Positive) logit cell by cell, each pooled feature map weighted by "
                    "its part of the head, on the first backbone's grid; the cells sum to the logit")
LEGEND = {OCCLUSION: "red: pushes toward Positive, blue: toward Negative",
          CLASS_ACTIVATION: "red: raises the score more than the photo's average region, blue: less"}
MARKER = "valence-explain"  # the PNG text chunk (its value: the method) that marks a map as explain's own to rewrite


def map_info(how):
    """The PNG text chunk that marks a sheet as one of explain's maps (``marked``), naming the method ``how``."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(MARKER, how)
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


def method(classifier):
    """The method ``explain_batch`` uses for ``classifier``."""
    return CLASS_ACTIVATION if getattr(classifier, "logit_map", False) else OCCLUSION


def explain_batch(classifier, images, flip_average=False):
    """(scores, maps) of a uint8 batch: every output of the photos as ``score_all`` gives it (P(Positive),
    ratings …) and their maps (N, rows, columns) float32, the model's own LOGIT_MAP where it has one (one pass,
    two with flip averaging), else an occlusion map per photo (``occlusion_job``)."""
    if getattr(classifier, "logit_map", False):
        scores = score_all(classifier, images, flip_average)
        return scores, scores.pop(LOGIT_MAP)
    found = []
    for image in images:
        batch, read = occlusion_job(image)
        found.append(read(score_all(classifier, batch, flip_average)))
    return {k: np.concatenate([photo[k] for photo, _ in found]) for k in found[0][0]}, np.array([h for _, h in found], np.float32)


def occlusion_job(image):
    """(batch, read) for one uint8 ``image``: the photo and its covered copies to score, and ``read(scores)`` →
    (the photo's own scores, its occlusion map) from every output of that batch (``score_all``'s, or the server's)."""
    covered, positions = occluded(image)

    def read(scored):
        probability = np.asarray(scored[PROBABILITY], dtype=float)
        return {k: v[:1] for k, v in scored.items()}, occlusion_map(probability[0], probability[1:], positions)

    return np.concatenate([image[None], covered]), read


def drawn(heat, how):
    """The map as drawn: a class activation map centred on its mean cell (the cells sum to the logit, so their
    mean, its even share, says nothing of where); an occlusion map as it is (already a difference)."""
    heat = np.asarray(heat, dtype=np.float32)
    return heat - heat.mean() if how == CLASS_ACTIVATION else heat


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
    """``image`` (H, W, 3) uint8 with ``heat`` (rows × columns) drawn over it, smoothly upsampled; colour saturates
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
