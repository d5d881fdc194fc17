"""Fit a registry model on the training manifest, reproducibly, with per-epoch learning curves."""
import keras
import tensorflow as tf

from valence.datasets import targets
from valence.files import atomic_path
from valence.images import augmenter, dataset, load_images
from valence.models import build
from valence.splitting import stratified_split


def carve_validation(rows, validation_size, seed):
    """(fit rows, validation rows): a stratified slice of the training split, so the test split stays unseen."""
    if validation_size == 0:
        return rows, []
    return stratified_split(rows, validation_size, seed, what="training split (train.validation_size)")


def seed_everything(seed):
    """Python, NumPy and TensorFlow seeds plus deterministic kernels: same params → same weights on CPU."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(params, rows, history_path):
    """Train ``params.model`` on manifest ``rows``; write the Keras CSV history; return the model."""
    seed_everything(params.seed)
    fit_rows, val_rows = carve_validation(rows, params.validation_size, params.seed)
    size = (params.image_height, params.image_width)
    train_data = dataset(load_images([r["path"] for r in fit_rows], *size, desc="train"), targets(fit_rows),
                         params.batch_size, seed=params.seed, augment=augmenter(params.augment, params.seed))
    val_data = None
    if val_rows:
        val_data = dataset(load_images([r["path"] for r in val_rows], *size, desc="validation"),
                           targets(val_rows), params.batch_size)
    print(f"training {params.model} on {len(fit_rows)} images, validating on {len(val_rows)}")
    model = build(params.model, *size, params.learning_rate)
    with atomic_path(history_path) as tmp:
        # shuffle=False: the dataset already shuffles, seeded; Keras' own shuffle would be ignored anyway.
        model.fit(train_data, validation_data=val_data, epochs=params.epochs, verbose=2, shuffle=False,
                  callbacks=[keras.callbacks.CSVLogger(str(tmp))])
    return model
