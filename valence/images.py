"""Decoding (any format Pillow reads, EXIF orientation applied), resizing, tf.data input and augmentation."""
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from valence.compute import cores
from valence.errors import PipelineError

# decode refuses images above this many pixels, checked from the header before decoding (a plain photo is far
# below it); the check is explicit, so Pillow's own warning between 1× and 2× is redundant. A global warnings
# filter, rather than catch_warnings around each decode, is thread-safe: decoding runs in threads.
Image.MAX_IMAGE_PIXELS = 50_000_000
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _to_rgb(image):
    """RGB uint8 from any mode: alpha composited on white, 16-bit scaled down rather than clipped."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


class NotAnImage(ValueError):
    """Pillow does not recognise the file's format."""


class TooManyPixels(ValueError):
    """More pixels than Image.MAX_IMAGE_PIXELS: a decompression bomb, perhaps."""


def decode(source):
    """Fully decode an image file (path or file object) into an upright RGB PIL image.

    Raises ValueError with a short reason when it is not a usable image: NotAnImage, TooManyPixels, or a plain
    ValueError for a damaged (e.g. truncated) file.
    """
    try:
        with Image.open(source) as image:  # reads the header only
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError()
            image.load()  # decode every pixel now: truncated files fail here, not during training
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright)
    except UnidentifiedImageError:
        raise NotAnImage("not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise TooManyPixels(f"more than {Image.MAX_IMAGE_PIXELS} pixels (decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot decode ({err})") from None


def model_input(image, height, width):
    """An upright RGB PIL image (``decode``) as uint8 of shape (height, width, 3), stretched to the model's size
    like Keras' loaders. Training, evaluate, predict and serve all go through here."""
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_image(path, height, width):
    """One image file as ``model_input``; a file that is not a usable image is a PipelineError naming it."""
    try:
        image = decode(path)
    except ValueError as err:
        raise PipelineError(f"{path}: {err}") from None
    return model_input(image, height, width)


def load_images(paths, height, width, desc="images"):
    """All images as one uint8 array (N, height, width, 3); uint8 keeps OASIS at 400×500 under 0.5 GB.

    Decoding runs in one thread per core: Pillow releases the GIL while it decodes and resizes.
    """
    batch = np.empty((len(paths), height, width, 3), dtype=np.uint8)

    def load(i):
        batch[i] = load_image(paths[i], height, width)

    with ThreadPoolExecutor(cores()) as pool:
        for _ in tqdm(pool.map(load, range(len(paths))), total=len(paths), desc=f"loading {desc}", unit="img"):
            pass
    return batch


def augments(augment):
    """Whether ``augment`` (train.augment params) changes images at all."""
    return bool(augment.rotation_degrees or augment.width_shift or augment.height_shift or augment.shear_degrees
                or augment.zoom or augment.horizontal_flip)


def random_affine(images, augment, seed):
    """The seed's ImageDataGenerator augmentation as one random affine map per image, resampled once.

    Rotation, shifts, shear, zoom and horizontal flip compose into one matrix that
    ``keras.ops.image.affine_transform`` applies: 4× cheaper than Keras' five preprocessing layers, each of
    which resamples the whole image. The draws are stateless, from ``seed`` (two integers), so a batch looks
    the same whichever tf.data thread augments it: the map can run in parallel and stay reproducible.
    """
    import keras
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    u = tf.random.stateless_uniform(tf.stack([batch, 7]), tf.cast(seed, tf.int64), minval=-1.0, maxval=1.0)
    angle = u[:, 0] * math.radians(augment.rotation_degrees)
    shear = u[:, 1] * math.tan(math.radians(augment.shear_degrees))
    zoom_x, zoom_y = 1 + u[:, 2] * augment.zoom, 1 + u[:, 3] * augment.zoom  # > 1 shows more: zoom out
    flip = tf.where(u[:, 6] < 0, -1.0, 1.0) if augment.horizontal_flip else tf.ones_like(angle)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # output pixel → input pixel: rotation · shear · zoom · flip about the centre, then the shift
    a0, a1 = cos * zoom_x * flip, (cos * shear - sin) * zoom_y
    b0, b1 = sin * zoom_x * flip, (sin * shear + cos) * zoom_y
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a2 = cx - a0 * cx - a1 * cy + u[:, 4] * augment.width_shift * width
    b2 = cy - b0 * cx - b1 * cy + u[:, 5] * augment.height_shift * height
    zeros = tf.zeros_like(angle)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear",
                                            fill_mode=augment.fill_mode)


def dataset(images, labels, batch_size, seed=None, augment=None, shuffle=True):
    """A tf.data pipeline of float32 0–255 batches, shuffled (``seed``, unless ``shuffle`` is False) and
    augmented (``augment``: train.augment params) with draws from ``seed``.

    Batches are cast and augmented in parallel threads; their order, and every random draw, is fixed by
    ``seed``, so training stays reproducible.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, dtype=np.float32)))
    if seed is not None and shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is not None and augments(augment):
        # one stateless seed per batch, new each epoch, reproducible from `seed`
        seeds = tf.data.Dataset.random(seed=seed or 0, rerandomize_each_iteration=True).batch(2)
        data = tf.data.Dataset.zip(data, seeds).map(
            lambda batch, pair: (random_affine(tf.cast(batch[0], tf.float32), augment, pair), batch[1]), **parallel)
    else:
        data = data.map(lambda x, y: (tf.cast(x, tf.float32), y), **parallel)
    return data.prefetch(tf.data.AUTOTUNE)
