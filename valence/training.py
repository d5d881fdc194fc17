"""Fit a registry model on the training manifest, reproducibly, with per-epoch learning curves.

mobilenet_v2 trains in two phases: the new head on the frozen backbone, then the top blocks fine-tuned at a
low learning rate. The other models train in one phase. A phase stops early on the validation AUC when
the model's patience is above 0.
"""
import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from valence.datasets import targets
from valence.images import augmenter, dataset, load_images
from valence.models import build, compile_model, unfreeze_top_blocks
from valence.splitting import stratified_split

HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"]


def carve_validation(rows, validation_size, seed):
    """(fit rows, validation rows): a stratified slice of the training split, so the test split stays unseen."""
    if validation_size == 0:
        return rows, []
    return stratified_split(rows, validation_size, seed, what="training split (train.validation_size)")


def seed_everything(seed):
    """Python, NumPy and TensorFlow seeds plus deterministic kernels: same params → same weights on CPU."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def class_weights(y, how):
    """{0: w, 1: w} weighing each class by its inverse frequency, or None."""
    if how == "none":
        return None
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y.astype(int))
    return {0: float(weights[0]), 1: float(weights[1])}


def phases(p):
    """[(name, epochs, learning rate)] for ``p.model``."""
    h = p.hyper
    if p.model != "mobilenet_v2":
        return [("train", h.epochs, h.learning_rate)]
    plan = [("head", h.epochs, h.learning_rate)]
    if h.fine_tune_epochs:
        plan.append(("fine_tune", h.fine_tune_epochs, h.fine_tune_learning_rate))
    return plan


def train(p, rows, weights="imagenet"):
    """Train ``p.model`` on manifest ``rows``; return the model and its history rows (one per epoch)."""
    seed_everything(p.seed)
    fit_rows, val_rows = carve_validation(rows, p.validation_size, p.seed)
    h = p.hyper
    size = (h.image_height, h.image_width)
    y_fit = targets(fit_rows)
    train_data = dataset(load_images([r["path"] for r in fit_rows], *size, desc="train"), y_fit,
                         p.batch_size, seed=p.seed, augment=augmenter(p.augment, p.seed))
    val_data = None
    if val_rows:
        val_data = dataset(load_images([r["path"] for r in val_rows], *size, desc="validation"),
                           targets(val_rows), p.batch_size)
    weights_by_class = class_weights(y_fit, p.class_weight)
    print(f"training {p.model} on {len(fit_rows)} images, validating on {len(val_rows)}; "
          f"class weights {weights_by_class}")
    model = build(p, weights)
    history = []
    for name, epochs, learning_rate in phases(p):
        if name == "fine_tune":
            unfreeze_top_blocks(model, h.fine_tune_blocks)
        # (re)compiling after unfreezing makes the change take effect; a decay spans this phase's epochs
        compile_model(model, learning_rate, h.learning_rate_decay, steps=epochs * len(train_data))
        callbacks = []
        if h.patience and val_data is not None:
            callbacks.append(keras.callbacks.EarlyStopping("val_auc", mode="max", patience=h.patience,
                                                           restore_best_weights=True, verbose=1))
        print(f"phase {name}: up to {epochs} epochs at learning rate {learning_rate}")
        # shuffle=False: the dataset already shuffles, seeded; Keras' own shuffle would be ignored anyway.
        fit = model.fit(train_data, validation_data=val_data, epochs=epochs, verbose=2, shuffle=False,
                        class_weight=weights_by_class, callbacks=callbacks)
        for i in range(len(fit.history["loss"])):
            history.append({"epoch": len(history) + 1, "phase": name,
                            **{k: round(float(v[i]), 6) for k, v in fit.history.items()}})
    return model, history
