"""Frozen ImageNet features of each photo and its views: computed once, shared by every fold's head.

A feature extractor is a pretrained backbone, frozen, that global-average-pools its last feature map and, if
asked, the outputs of earlier blocks, and concatenates them: RGB 0–255 in, one vector out. The heads that train
on these vectors are tiny (valence.learn.heads), so the forward passes here are nearly all the cost of training.

Views: 0 is the photo, 1 its mirror image, 2 and up augmented copies (train.augment's random affine maps,
seeded per view), so `views: 2` is what flip averaging at prediction time sees.
"""
from pathlib import Path

import numpy as np

from valence.config import MIRROR_VIEW, PHOTO_VIEW, POOLED

BATCH = 32  # images per forward pass: inference only


def block_output(backbone, number, pattern):
    """The last layer of block ``number`` (its residual add where it has one), by the backbone's names."""
    prefix = pattern.replace(r"(\d+)", str(number)).rstrip("_")
    names = [layer.name for layer in backbone.layers if layer.name.startswith(prefix + "_")]
    if not names:
        raise ValueError(f"{backbone.name} has no block {number}")
    return backbone.get_layer(names[-1]).output


def backbone_maps(name, height, width, blocks=(), weights="imagenet"):
    """Pretrained ``name`` at height × width as a model image → [its last feature map, each asked block's output]."""
    import keras

    from valence.learn.models import pretrained_backbone
    from valence.registry import BACKBONES

    rescaling, backbone = pretrained_backbone(name, height, width, weights)
    backbone.trainable = False
    outputs = [backbone.output] + [block_output(backbone, n, BACKBONES[name].block_pattern) for n in blocks]
    inner = keras.Model(backbone.input, outputs, name=f"{name}_features")
    image = keras.Input((height, width, 3))
    return keras.Model(image, inner(rescaling(image), training=False), name=f"{name}_maps")


def combined_extractor(specs, weights="imagenet"):
    """One extractor for several backbones, ``specs`` [(name, height, width, blocks)]: image → every map of each
    (``backbone_maps``) average-pooled (layers named config.POOLED) and concatenated. It takes images at the first one's
    size and resizes them inside (bilinear) for the others, so the features a head trains on are computed exactly
    as the released model computes them; ``heads.feature_maps`` finds the maps behind the features again."""
    import keras
    from keras import layers

    image = keras.Input((specs[0][1], specs[0][2], 3))
    maps = []
    for name, height, width, blocks in specs:
        seen = image if (height, width) == tuple(image.shape[1:3]) else layers.Resizing(height, width)(image)
        found = backbone_maps(name, height, width, blocks, weights)(seen)
        maps += list(found) if isinstance(found, (list, tuple)) else [found]
    pooled = [layers.GlobalAveragePooling2D(name=POOLED.format(i))(m) for i, m in enumerate(maps)]
    return keras.Model(image, layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0],
                       name="_".join(f"{name}_pooled" for name, *_ in specs))


def extractor(name, height, width, blocks=(), weights="imagenet"):
    """Pretrained ``name`` at height × width as image → [pooled last feature map, pooled block outputs …]."""
    return combined_extractor([(name, height, width, blocks)], weights)


def view_batches(images, view, augment=None, seed=0):
    """A tf.data pipeline of ``images`` as ``view`` shows them (see module docstring), in order."""
    from valence.learn.train_on_images import dataset

    labels = np.zeros(len(images), np.float32)
    if view == PHOTO_VIEW:
        return dataset(images, labels, BATCH, shuffle=False)
    if view == MIRROR_VIEW:
        return dataset(images[:, :, ::-1], labels, BATCH, shuffle=False)
    return dataset(images, labels, BATCH, seed=seed * 1000 + view, augment=augment, shuffle=False)


def extract(model, images, views, augment=None, seed=0):
    """float32 (views, images, features): ``model`` (an ``extractor``) on every view of every image."""
    from valence.learn.models import predictor

    run = predictor(model)
    return np.stack([run(view_batches(images, v, augment, seed), f"features of view {v + 1}/{views}")
                     for v in range(views)])


def extract_view(model, images, view, augment=None, seed=0):
    """float32 (images, features): ``model`` on view ``view`` of every image (= ``extract(…)[view]``)."""
    from valence.learn.models import predictor

    return predictor(model)(view_batches(images, view, augment, seed), f"features of view {view + 1}")


def save(folder, paths, view_features):
    """Write (views, images, features) and the images' paths, in order, to ``folder``, replaced whole at once
    (a crash leaves the old pair, never a new paths.csv beside old features)."""
    from valence.files import atomic_dir, write_csv

    with atomic_dir(folder) as tmp:
        write_csv(tmp / "paths.csv", [{"path": p} for p in paths], ["path"])
        np.save(tmp / "features.npy", view_features)


def load(folder, paths):
    """(views, len(paths), features) for ``paths`` from a folder ``save`` wrote; a path it lacks is an error."""
    from valence.errors import PipelineError
    from valence.files import read_csv

    folder = Path(folder)
    if not (folder / "features.npy").is_file():
        raise PipelineError(f"{folder}/features.npy: not found; run the features stage (dvc repro features)")
    index = {r["path"]: i for i, r in enumerate(read_csv(folder / "paths.csv", required=["path"]))}
    missing = [p for p in paths if p not in index]
    if missing:
        raise PipelineError(f"{folder}: no features for {missing[0]} (and {len(missing) - 1} more); "
                            "run the features stage again (dvc repro features)")
    return np.load(folder / "features.npy", mmap_mode="r")[:, [index[p] for p in paths]]
