"""Fit a registry model on the training manifest, reproducibly, with per-epoch learning curves: the tf.data
input, its augmentation, the feature cache, the phases.

The pretrained models (every backbone in valence/registry.py) train in two phases: the new head on the frozen
backbone, then the top blocks fine-tuned at a low learning rate. The other models train in one phase. A phase
stops early on the validation AUC when the model's patience is above 0.

Below its top ``fine_tune_blocks`` blocks, the backbone never trains, yet that part costs ~90 % of every
forward pass. With ``cached_views`` > 0 its output is computed once for that many augmented views of each
training image (and once for each validation image), and both phases train only the top on those cached
features: each epoch shows every image once, under one of its views drawn at random. The saved model is the
whole network all the same.
"""
import math

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from valence import runtime
from valence.data.folds import stratified_split
from valence.data.images import load_images
from valence.data.labels import targets
from valence.errors import PipelineError
from valence.learn.models import build, compile_model, predictor, split_frozen, unfreeze_top_blocks
from valence.registry import BACKBONES

FEATURE_BATCH = 64  # images per forward pass when caching features: inference only, so larger is cheaper


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


def images_per_epoch(n, batch_size, replicas):
    """How many of ``n`` shuffled training images an epoch uses: all, unless several replicas would get a last
    batch with fewer images than replicas; then those few sit this epoch out.

    MirroredStrategy splits each batch evenly over the replicas (a last batch of 7 on 2 as 4 + 3), so only a
    last batch smaller than the replica count leaves one empty, and BatchNormalization on an empty batch fails
    (oneDNN kernels) or turns every weight into NaN (TensorFlow's own kernels). Dropping it, rather than
    padding it with weight-0 copies, keeps copies out of BatchNormalization's batch statistics. The order is
    reshuffled each epoch, so a different image sits out each time; one device (replicas 1) uses every image.
    """
    leftover = n % batch_size
    used = n - leftover if 0 < leftover < replicas else n
    if used == 0:
        raise PipelineError(f"{n} training image(s) cannot give each of {replicas} devices one; add images or "
                            "train on fewer devices (CUDA_VISIBLE_DEVICES)")
    return used


def dataset(images, labels, batch_size, seed=None, augment=None, shuffle=True, replicas=1):
    """A tf.data pipeline of float32 0–255 batches, shuffled (``seed``, unless ``shuffle`` is False) and
    augmented (``augment``: train.augment params) with draws from ``seed``; each epoch's images as
    ``images_per_epoch`` counts them for ``replicas`` devices.

    Batches are cast and augmented in parallel threads; their order, and every random draw, is fixed by
    ``seed``, so training stays reproducible.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, dtype=np.float32)))
    if seed is not None and shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    used = images_per_epoch(len(images), batch_size, replicas)
    if used < len(images):
        data = data.take(used)
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


def carve_validation(rows, validation_size, seed):
    """(fit rows, validation rows): a stratified slice of the training split, so the test split stays unseen.

    Grouped like the split when the manifest names groups: early stopping on photos of concepts the model
    trains on would reward memorising concepts, as a leaky test split does.
    """
    if validation_size == 0:
        return rows, []
    return stratified_split(rows, validation_size, seed, what="training split (train.validation_size)",
                            grouped=any(r.get("group") for r in rows))


def class_weights(y, how):
    """{0: w, 1: w} weighing each class by its inverse frequency, or None."""
    if how == "none":
        return None
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y.astype(int))
    return {0: float(weights[0]), 1: float(weights[1])}


def phases(p):
    """[(name, epochs, learning rate)] for ``p.model``."""
    h = p.hyper
    if p.model not in BACKBONES:
        return [("train", h.epochs, h.learning_rate)]
    plan = [("head", h.epochs, h.learning_rate)]
    if h.fine_tune_epochs:
        plan.append(("fine_tune", h.fine_tune_epochs, h.fine_tune_learning_rate))
    return plan


class LiveLog(keras.callbacks.Callback):
    """Each epoch's metrics and phase to a dvclive ``Live`` that spans every phase, one step per epoch.

    Names as dvclive's own DVCLiveCallback gives them (loss → train/loss, val_loss → eval/loss); that callback
    ends the run when a fit ends, so two phases would be two runs. ``phase`` is logged too: the summary shows
    it while `dvc exp run` trains, and the learning-curve template shapes each epoch's points by it.
    """

    def __init__(self, live, phase):
        super().__init__()
        self.live, self.phase = live, phase

    def on_epoch_end(self, epoch, logs=None):
        from dvclive.utils import standardize_metric_name

        for name, value in (logs or {}).items():
            self.live.log_metric(standardize_metric_name(name, "dvclive.keras"), round(float(value), 6))
        self.live.log_metric("phase", self.phase)
        self.live.next_step()  # writes the summary (metrics.json) now, so `dvc exp show` sees this epoch


def uses_feature_cache(p):
    return p.model in BACKBONES and p.hyper.cached_views > 0


class CachedViews(keras.utils.PyDataset):
    """Batches of cached features (views, images, …): every image once an epoch, under a random view (with
    several ``replicas``, the images ``images_per_epoch`` counts).

    The order and the views come from ``seed`` and the epoch number, so runs repeat exactly.
    """

    def __init__(self, features, y, weights_by_class, batch_size, seed, replicas=1):
        super().__init__()
        self.features, self.y, self.batch_size, self.seed, self.epoch = features, y, batch_size, seed, 0
        self.used = images_per_epoch(len(y), batch_size, replicas)
        self.weight = (np.ones_like(y) if weights_by_class is None
                       else np.where(y == 1, weights_by_class[1], weights_by_class[0]).astype(np.float32))
        self._draw()

    def _draw(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order = rng.permutation(len(self.y))[:self.used]
        self.views = rng.integers(0, len(self.features), len(self.y))

    def __len__(self):
        return math.ceil(self.used / self.batch_size)

    def __getitem__(self, i):
        index = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.features[self.views[index], index], self.y[index], self.weight[index]

    def on_epoch_end(self):
        self.epoch += 1
        self._draw()


def cache_features(p, model, fit_images, y_fit, val_images, y_val, replicas=1):
    """{phase: (training data, validation data, the part of the model that trains)} over cached features.

    The lower blocks run once per view; the head phase trains on the pooled output of the (then frozen) top
    blocks, computed once per view too, and fine-tuning trains the top blocks on the lower blocks' output.
    """
    h = p.hyper
    parts = split_frozen(model, h.fine_tune_blocks)
    lower, upper = predictor(parts.lower, p.jit_compile), predictor(parts.upper, p.jit_compile)
    cut = np.stack([lower(dataset(fit_images, y_fit, FEATURE_BATCH, seed=p.seed * 1000 + view, augment=p.augment,
                                  shuffle=False), f"features of view {view + 1}/{h.cached_views}")
                    for view in range(h.cached_views)])
    pooled = np.stack([upper(tf_data(view, y_fit), "pooled features") for view in cut])
    weights_by_class = class_weights(y_fit, p.class_weight)
    plan = {"head": [CachedViews(pooled, y_fit, weights_by_class, p.batch_size, p.seed, replicas), None, parts.head],
            "fine_tune": [CachedViews(cut, y_fit, weights_by_class, p.batch_size, p.seed + 1, replicas), None,
                          parts.top]}
    if len(val_images):
        val_cut = lower(dataset(val_images, y_val, FEATURE_BATCH), "validation features")
        plan["fine_tune"][1] = (val_cut, y_val)
        plan["head"][1] = (upper(tf_data(val_cut, y_val), "pooled validation features"), y_val)
    return plan


def tf_data(features, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((features, y)).batch(FEATURE_BATCH)


def train(p, rows, weights="imagenet", live=None):
    """Train ``p.model`` on manifest ``rows``; return the model and its history rows (one per epoch).

    ``live``: a dvclive ``Live`` that gets every epoch's metrics as they come (the train stage passes one).
    """
    runtime.configure(p.seed, p.precision, p.op_determinism)
    fit_rows, val_rows = carve_validation(rows, p.validation_size, p.seed)
    h = p.hyper
    size = (h.image_height, h.image_width)
    y_fit, y_val = targets(fit_rows), targets(val_rows)
    fit_images = load_images([r["path"] for r in fit_rows], *size, desc="train")
    val_images = load_images([r["path"] for r in val_rows], *size, desc="validation")
    weights_by_class = class_weights(y_fit, p.class_weight)
    print(f"training {p.model} on {len(fit_rows)} images, validating on {len(val_rows)}; "
          f"class weights {weights_by_class}")
    distribute = runtime.strategy()
    if distribute.num_replicas_in_sync > 1:
        print(f"training on {distribute.num_replicas_in_sync} devices (MirroredStrategy)")
    with distribute.scope():  # the model, its parts and their optimizers get variables on every device
        return _fit_phases(p, weights, fit_images, y_fit, val_images, y_val, weights_by_class, live,
                           distribute.num_replicas_in_sync)


def even_batches(data, replicas):
    """Validation arrays (x, y) as (x, y, sample weight) in batches that split evenly over ``replicas``.

    Keras' evaluation step under MirroredStrategy fails on a batch that does not (TensorFlow's AddN on unequal
    replica shapes), so the last batch is filled with copies of the last image at weight 0. The real images
    weigh padded / real, so loss, accuracy and AUC are exactly those of the real images, provided the metrics
    are compiled as weighted ones (``compile_model(weighted=True)``).
    """
    x, y = (np.asarray(part) for part in data)
    batch = replicas * max(1, FEATURE_BATCH // replicas)
    padded = math.ceil(len(y) / batch) * batch
    pad = padded - len(y)
    weight = np.concatenate([np.full(len(y), padded / len(y), np.float32), np.zeros(pad, np.float32)])
    return (np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]), np.concatenate([y, np.repeat(y[-1:], pad)]),
            weight), batch


def _fit_phases(p, weights, fit_images, y_fit, val_images, y_val, weights_by_class, live, replicas):
    """Build ``p.model`` and fit it phase by phase: (model, history rows)."""
    h = p.hyper
    model = build(p, weights)
    if uses_feature_cache(p):
        plan = cache_features(p, model, fit_images, y_fit, val_images, y_val, replicas)
        weights_by_class = None  # CachedViews carries them as sample weights
    else:
        # one data set for all phases, so the seeded shuffle and views go on where the last phase stopped
        validation = ((val_images.astype(np.float32), y_val) if replicas > 1  # arrays, for even_batches below
                      else dataset(val_images, y_val, p.batch_size))
        data = [dataset(fit_images, y_fit, p.batch_size, seed=p.seed, augment=p.augment, replicas=replicas),
                validation if len(val_images) else None, model]
        plan = {name: data for name, _, _ in phases(p)}
    history = []
    for name, epochs, learning_rate in phases(p):
        train_data, val_data, trained = plan[name]
        val_batch = None
        if replicas > 1 and val_data is not None:
            val_data, val_batch = even_batches(val_data, replicas)
        if name == "fine_tune":
            unfreeze_top_blocks(model, h.fine_tune_blocks)
        # (re)compiling after unfreezing makes the change take effect; a decay spans this phase's epochs
        compile_model(trained, learning_rate, h.learning_rate_decay, steps=epochs * len(train_data),
                      jit_compile=p.jit_compile, weighted=val_batch is not None)
        callbacks = [LiveLog(live, name)] if live is not None else []
        if h.patience and val_data is not None:
            callbacks.append(keras.callbacks.EarlyStopping("val_auc", mode="max", patience=h.patience,
                                                           restore_best_weights=True, verbose=1))
        print(f"phase {name}: up to {epochs} epochs at learning rate {learning_rate}")
        # shuffle=False: the data already shuffles, seeded; Keras' own shuffle would be ignored anyway.
        fit = trained.fit(train_data, validation_data=val_data, epochs=epochs, verbose=2, shuffle=False,
                          class_weight=weights_by_class, callbacks=callbacks,
                          **({"validation_batch_size": val_batch} if val_batch else {}))
        for i in range(len(fit.history["loss"])):
            history.append({"epoch": len(history) + 1, "phase": name,
                            **{k: round(float(v[i]), 6) for k, v in fit.history.items()}})
    return model, history
