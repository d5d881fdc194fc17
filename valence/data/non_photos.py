"""Generated images that are not photos: what the photo check learns to tell apart from the photos it trained on.

A model of photos scores anything: a page of text or a settings screenshot gets a confident-looking P(Positive).
Distances in ImageNet feature space do not find such images (issue 37: nearest-neighbour AUROC 0.70); a head
taught what non-photos look like (outlier exposure) does. This module draws them, seeded and deterministic:
``draw(kind, rng, height, width)`` is one image of a kind, ``generate`` many. Each image has its own generator
seeded by (seed, kind, index), so adding a kind or images changes none of the others. Text uses Pillow's
bundled font (no system fonts: every machine draws the same pixels), at many sizes, weights and slants.
"""
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("the", "model", "photo", "settings", "account", "report", "value", "total", "data", "user", "save",
         "cancel", "open", "file", "page", "chart", "result", "summary", "number", "quarter", "sales", "profile",
         "network", "update", "privacy", "status", "invoice", "date", "name", "email", "search", "help", "table")


def _colour(rng, lo=0, hi=255):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, size=3))


def _pale(rng):
    return _colour(rng, 215, 255)


def _dark(rng):
    return _colour(rng, 0, 90)


def _font(rng, low, high):
    return ImageFont.load_default(size=int(rng.integers(low, high + 1)))


def _words(rng, count):
    words = [str(rng.choice(WORDS)) for _ in range(count)]
    if rng.random() < 0.3:
        words[int(rng.integers(count))] = "".join(rng.choice(list(string.digits), size=int(rng.integers(2, 6))))
    return " ".join(words)


def _canvas(rng, height, width, background=None):
    image = Image.new("RGB", (width, height), background or _pale(rng))
    return image, ImageDraw.Draw(image)


def flat(rng, height, width):
    """One colour, edge to edge."""
    return Image.new("RGB", (width, height), _colour(rng))


def gradient(rng, height, width):
    """A linear or radial blend between two colours."""
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(angle) + y * np.sin(angle)
    else:
        t = np.hypot(x - rng.uniform(0, 1), y - rng.uniform(0, 1))
    t = (t - t.min()) / (np.ptp(t) or 1)
    return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8), "RGB")


def noise(rng, height, width):
    """Pixel noise: per pixel, in coloured blocks, or smooth blobs."""
    style = rng.integers(3)
    if style == 0:
        pixels = rng.integers(0, 256, (height, width, 3))
    else:
        cells = int(rng.integers(4, 40)) if style == 1 else int(rng.integers(3, 8))
        coarse = rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8)
        return Image.fromarray(coarse, "RGB").resize((width, height), Image.NEAREST if style == 1 else Image.BICUBIC)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def document(rng, height, width):
    """A page of text: a heading, paragraphs of lines, margins, sometimes two columns."""
    image, draw = _canvas(rng, height, width, _colour(rng, 235, 255))
    ink, size = _dark(rng), int(rng.integers(8, 20))
    margin, columns = int(width * rng.uniform(0.04, 0.12)), 1 + int(rng.random() < 0.3)
    draw.text((margin, margin), _words(rng, 4).title(), fill=ink, font=_font(rng, size + 4, size * 2))
    y, column_width = margin + size * 3, (width - 2 * margin) // columns
    font = ImageFont.load_default(size=size)
    for column in range(columns):
        y_line = y
        while y_line < height - margin - size:
            if rng.random() < 0.12:  # a paragraph break
                y_line += size
                continue
            line = _words(rng, 12)
            while line and draw.textlength(line, font=font) > column_width - size:
                line = line.rsplit(" ", 1)[0]
            draw.text((margin + column * column_width, y_line), line, fill=ink, font=font)
            y_line += int(size * rng.uniform(1.3, 1.8))
    return image


def poster(rng, height, width):
    """A few large words on a plain or two-tone ground, as a slide, sign or banner."""
    image, draw = _canvas(rng, height, width, _colour(rng))
    if rng.random() < 0.5:
        draw.rectangle([0, int(height * rng.uniform(0.5, 0.8)), width, height], fill=_colour(rng))
    for _ in range(int(rng.integers(1, 4))):
        font = _font(rng, max(12, height // 12), max(14, height // 4))
        draw.text((rng.uniform(0, width * 0.3), rng.uniform(0, height * 0.8)), _words(rng, int(rng.integers(1, 4))),
                  fill=_colour(rng), font=font, stroke_width=int(rng.integers(0, 3)), stroke_fill=_colour(rng))
    return image


def _axes(rng, draw, height, width):
    """Plot axes with ticks and labels: the plotting box (left, top, right, bottom)."""
    ink, font = _dark(rng), _font(rng, 8, 14)
    box = (int(width * 0.12), int(height * 0.1), int(width * 0.95), int(height * 0.85))
    draw.line([box[0], box[1], box[0], box[3], box[2], box[3]], fill=ink, width=int(rng.integers(1, 3)))
    for i in range(int(rng.integers(3, 8))):
        x = box[0] + (box[2] - box[0]) * i / 6
        y = box[3] - (box[3] - box[1]) * i / 6
        draw.line([x, box[3], x, box[3] + 4], fill=ink)
        draw.line([box[0] - 4, y, box[0], y], fill=ink)
        draw.text((box[0] - 30, y - 6), str(i * int(rng.integers(1, 50))), fill=ink, font=font)
        if rng.random() < 0.5:
            draw.line([box[0], y, box[2], y], fill=_colour(rng, 200, 235))
    draw.text((box[0], max(0, box[1] - 16)), _words(rng, 3).title(), fill=ink, font=font)
    return box


def bar_chart(rng, height, width):
    image, draw = _canvas(rng, height, width)
    left, top, right, bottom = _axes(rng, draw, height, width)
    bars, palette = int(rng.integers(3, 14)), [_colour(rng, 30, 220) for _ in range(3)]
    step = (right - left) / bars
    for i in range(bars):
        value = rng.uniform(0.05, 1.0) * (bottom - top)
        draw.rectangle([left + i * step + step * 0.15, bottom - value, left + (i + 1) * step - step * 0.15, bottom],
                       fill=palette[i % len(palette)] if rng.random() < 0.7 else palette[0])
    return image


def line_chart(rng, height, width):
    image, draw = _canvas(rng, height, width)
    left, top, right, bottom = _axes(rng, draw, height, width)
    for _ in range(int(rng.integers(1, 5))):
        points = int(rng.integers(5, 60))
        walk = np.cumsum(rng.normal(0, 1, points))
        walk = (walk - walk.min()) / (np.ptp(walk) or 1)
        xs = np.linspace(left, right, points)
        ys = bottom - (0.05 + 0.9 * walk) * (bottom - top)
        draw.line(list(zip(xs, ys)), fill=_colour(rng, 0, 220), width=int(rng.integers(1, 4)))
    return image


def scatter_plot(rng, height, width):
    image, draw = _canvas(rng, height, width)
    left, top, right, bottom = _axes(rng, draw, height, width)
    centre, spread = rng.uniform(0.2, 0.8, 2), rng.uniform(0.05, 0.3)
    radius = int(rng.integers(1, 6))
    for _ in range(int(rng.integers(20, 400))):
        fx, fy = np.clip(rng.normal(centre, spread), 0, 1)
        x, y = left + fx * (right - left), bottom - fy * (bottom - top)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_colour(rng, 0, 200))
    return image


def shapes(rng, height, width):
    """Flat geometric shapes, filled or outlined, on a plain ground: clip art, logos, diagrams."""
    image, draw = _canvas(rng, height, width, _colour(rng))
    for _ in range(int(rng.integers(2, 15))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.05, 0.4) * min(height, width)
        box = [x0, y0, x0 + size * rng.uniform(0.5, 2), y0 + size * rng.uniform(0.5, 2)]
        fill, outline = (_colour(rng), None) if rng.random() < 0.7 else (None, _colour(rng))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(box, fill=fill, outline=outline, width=3)
        elif kind == 1:
            draw.ellipse(box, fill=fill, outline=outline, width=3)
        else:
            draw.polygon([(rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])) for _ in range(3)],
                         fill=fill, outline=outline)
    return image


def interface(rng, height, width):
    """A screenshot of an app: a title bar, a side menu, form fields with labels, buttons, toggles."""
    image, draw = _canvas(rng, height, width, _colour(rng, 225, 255))
    accent, ink, font = _colour(rng, 20, 200), _dark(rng), _font(rng, 9, 16)
    bar = int(height * rng.uniform(0.06, 0.12))
    draw.rectangle([0, 0, width, bar], fill=accent if rng.random() < 0.6 else _colour(rng, 30, 80))
    draw.text((10, bar // 4), _words(rng, 2).title(), fill=(255, 255, 255), font=font)
    left = 0
    if rng.random() < 0.6:  # a side menu
        left = int(width * rng.uniform(0.15, 0.3))
        draw.rectangle([0, bar, left, height], fill=_colour(rng, 200, 240))
        for i, y in enumerate(range(bar + 12, height - 20, 28)):
            draw.text((10, y), _words(rng, 1).title(), fill=ink, font=font)
    y = bar + 16
    while y < height - 40:
        x = left + 16
        draw.text((x, y), _words(rng, 2).title() + ":", fill=ink, font=font)
        field = rng.integers(3)
        if field == 0:  # a text box
            draw.rectangle([x + width * 0.25, y - 4, width - 20, y + 18], outline=_colour(rng, 150, 200), fill="white")
        elif field == 1:  # a toggle
            draw.rounded_rectangle([width - 70, y - 2, width - 30, y + 16], radius=9, fill=accent)
            draw.ellipse([width - 48, y, width - 32, y + 14], fill="white")
        else:  # a button
            draw.rounded_rectangle([x + width * 0.25, y - 4, x + width * 0.25 + 90, y + 20], radius=4, fill=accent)
            draw.text((x + width * 0.25 + 10, y), _words(rng, 1).title(), fill="white", font=font)
        y += int(rng.integers(30, 50))
    return image


def line_art(rng, height, width):
    """Dark strokes on paper: a sketch, a doodle, a signature."""
    image, draw = _canvas(rng, height, width, _colour(rng, 225, 255))
    ink = _dark(rng)
    for _ in range(int(rng.integers(3, 25))):
        points = [(rng.uniform(0, width), rng.uniform(0, height))]
        for _ in range(int(rng.integers(3, 30))):
            x, y = points[-1]
            points.append((np.clip(x + rng.normal(0, width * 0.05), 0, width),
                           np.clip(y + rng.normal(0, height * 0.05), 0, height)))
        draw.line(points, fill=ink, width=int(rng.integers(1, 5)), joint="curve")
    return image


def pattern(rng, height, width):
    """A repeating pattern: stripes, checks, dots."""
    image, draw = _canvas(rng, height, width, _colour(rng))
    step, ink, style = int(rng.integers(6, 60)), _colour(rng), rng.integers(3)
    for i in range(0, max(height, width) * 2, step):
        if style == 0:
            draw.line([(i, 0), (i - height, height)], fill=ink, width=max(1, step // 3))
        for j in range(0, height, step):
            if style == 1 and (i // step + j // step) % 2 == 0 and i < width:
                draw.rectangle([i, j, i + step, j + step], fill=ink)
            elif style == 2 and i < width:
                draw.ellipse([i, j, i + step // 2, j + step // 2], fill=ink)
    return image


def spreadsheet(rng, height, width):
    """A grid of cells holding numbers and words, a header row shaded."""
    image, draw = _canvas(rng, height, width, (255, 255, 255))
    rows, columns = int(rng.integers(8, 40)), int(rng.integers(3, 10))
    row_height, column_width = height / rows, width / columns
    font, ink = ImageFont.load_default(size=max(6, int(row_height * 0.6))), _dark(rng)
    draw.rectangle([0, 0, width, row_height], fill=_colour(rng, 180, 230))
    for r in range(rows):
        for c in range(columns):
            text = _words(rng, 1) if r == 0 or c == 0 else f"{rng.uniform(0, 10 ** rng.integers(1, 5)):.{rng.integers(0, 3)}f}"
            draw.text((c * column_width + 3, r * row_height + 1), text, fill=ink, font=font)
    grey = _colour(rng, 170, 220)
    for r in range(rows + 1):
        draw.line([0, r * row_height, width, r * row_height], fill=grey)
    for c in range(columns + 1):
        draw.line([c * column_width, 0, c * column_width, height], fill=grey)
    return image


KINDS = {kind.__name__: kind for kind in (flat, gradient, noise, document, poster, bar_chart, line_chart, scatter_plot,
                                          shapes, interface, line_art, pattern, spreadsheet)}


def draw(kind, rng, height, width):
    """One image of ``kind`` (a name in KINDS) as an RGB uint8 array of shape (height, width, 3)."""
    return np.asarray(KINDS[kind](rng, height, width).convert("RGB"), dtype=np.uint8)


def generate(kinds, per_kind, seed, sizes=((300, 400), (400, 300), (360, 480), (500, 400))):
    """(kind, index, pixels) for ``per_kind`` images of each of ``kinds``, each drawn from its own generator,
    seeded by (seed, the kind's place in KINDS, index), at one of ``sizes`` (height, width)."""
    order = list(KINDS)
    for kind in kinds:
        for index in range(per_kind):
            rng = np.random.default_rng([seed, order.index(kind), index])
            height, width = sizes[int(rng.integers(len(sizes)))]
            yield kind, index, draw(kind, rng, height, width)
