"""Decoding (any format Pillow reads, EXIF orientation applied) and resizing: uint8 RGB arrays, no TensorFlow.

Every stage that reads photos uses these, and so do predict and serve; training's tf.data input and
augmentation live in valence.learn.train_on_images.
"""
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from valence.errors import PipelineError
from valence.runtime import cores

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
