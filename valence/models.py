"""The model registry: each builder returns a compiled, self-contained Keras model.

Self-contained means: RGB float32 images in 0–255 at the configured size in, P(Positive) out; any scaling
happens inside, so the saved file is usable without this package.
"""
from pathlib import Path

import keras
from keras import layers

from valence.errors import PipelineError
from valence.images import dataset, load_images


def seed_baseline(height, width):
    """The seed's VGG-style CNN, layer for layer. Its convolutions have no activation, kept for fidelity."""
    return keras.Sequential([
        keras.Input((height, width, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(64, 3, strides=2),
        layers.Conv2D(64, 3, strides=2),
        layers.MaxPooling2D(2),
        layers.Conv2D(128, 3, strides=2),
        layers.Conv2D(128, 3, strides=2),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(256, activation="relu", kernel_initializer="he_normal"),
        layers.Dropout(0.5),
        layers.Dense(512, activation="relu", kernel_initializer="he_normal"),
        layers.Dropout(0.5),
        layers.Dense(1, activation="sigmoid"),
    ], name="seed_baseline")


MODELS = {"seed_baseline": seed_baseline}


def build(name, height, width, learning_rate):
    """A compiled model from the registry: Adam, binary cross-entropy, accuracy (as in the seed)."""
    try:
        model = MODELS[name](height, width)
    except ValueError as err:  # e.g. the image is too small for the strided convolutions
        raise PipelineError(f"train.model {name} cannot take {height}×{width} images: "
                            f"{str(err).splitlines()[0]}") from None
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def load(path):
    """Load a saved model in Keras' safe mode (no arbitrary code from the file)."""
    if not Path(path).is_file():
        raise PipelineError(f"{path}: model file not found; run the train stage")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as err:  # Keras raises many types for a corrupt or foreign file
        raise PipelineError(f"{path}: cannot load the model ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def predict(model, paths, batch_size):
    """P(Positive) for each image file, resized to the model's own input size."""
    _, height, width, _ = model.input_shape
    images = load_images(paths, height, width, desc="test")
    return model.predict(dataset(images, [0] * len(images), batch_size), verbose=0).reshape(-1)
