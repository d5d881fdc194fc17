import numpy as np
import pytest

from valence.learn import features, heads


def photos(n=3, height=64, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3)).astype(np.uint8)


@pytest.mark.parametrize("name, blocks, widths", [
    ("mobilenet_v2", (), [1280]),
    ("mobilenet_v2", (16, 13), [1280, 320, 160]),  # block 13 is the first of its stage: no residual add
    ("efficientnet_lite0", (15, 11), [1280, 320, 192]),
])
def test_extractor_pools_the_head_and_each_asked_block(name, blocks, widths):
    model = features.extractor(name, 64, 80, blocks, weights=None)
    x = photos().astype(np.float32)
    out = np.asarray(model(x))
    assert out.shape == (3, sum(widths))
    maps = model.get_layer(f"{name}_maps")
    found = maps(x)
    head_map = np.asarray(found[0] if isinstance(found, (list, tuple)) else found)
    np.testing.assert_allclose(out[:, :1280], head_map.mean(axis=(1, 2)), rtol=1e-4)  # untrained: tiny values
    assert [m.shape[-1] for m in heads.feature_maps(model)] == widths  # the maps behind the features, in order
    assert not any(layer.trainable for layer in maps.get_layer(f"{name}_features").layers if layer.weights)


def test_a_block_the_backbone_lacks_is_an_error():
    with pytest.raises(ValueError, match="no block 17"):
        features.extractor("mobilenet_v2", 64, 64, (17,), weights=None)


def test_views_are_the_photo_its_mirror_and_seeded_augmented_copies():
    from helpers import repo_params

    model = features.extractor("mobilenet_v2", 64, 80, weights=None)
    images = photos()
    augment = repo_params("train").augment
    views = features.extract(model, images, 4, augment, seed=3)
    assert views.shape == (4, 3, 1280) and views.dtype == np.float32
    same = lambda a, b: np.allclose(a, b, rtol=1e-3, atol=0)  # noqa: E731 (untrained: tiny values)
    assert same(views[0], np.asarray(model(images.astype(np.float32))))
    assert same(views[1], np.asarray(model(images[:, :, ::-1].astype(np.float32))))
    assert not same(views[1], views[0]) and not same(views[2], views[0]) and not same(views[2], views[3])
    np.testing.assert_array_equal(views, features.extract(model, images, 4, augment, seed=3))  # reproducible
    np.testing.assert_array_equal(views[3], features.extract_view(model, images, 3, augment, seed=3))
    assert not np.array_equal(views[2], features.extract(model, images, 3, augment, seed=4)[2])  # seeded


def test_a_combined_extractor_resizes_inside_for_the_second_backbone():
    import keras

    model = features.combined_extractor([("mobilenet_v2", 64, 80, ()), ("efficientnet_lite0", 48, 48, (15,))],
                                        weights=None)
    assert model.input_shape == (None, 64, 80, 3) and model.output_shape == (None, 1280 + 1280 + 320)
    x = photos().astype(np.float32)
    out = np.asarray(model(x))
    first, second = model.get_layer("mobilenet_v2_maps"), model.get_layer("efficientnet_lite0_maps")
    pooled = lambda found: np.concatenate([np.asarray(m).mean(axis=(1, 2)) for m in found], axis=1)  # noqa: E731
    second_alone = pooled(second(keras.layers.Resizing(48, 48)(x)))
    assert np.allclose(out[:, :1280], pooled([first(x)]), rtol=1e-4, atol=0)
    assert np.allclose(out[:, 1280:], second_alone, rtol=1e-4, atol=0)
    assert [tuple(m.shape[1:]) for m in heads.feature_maps(model)] == [(2, 3, 1280), (2, 2, 1280), (2, 2, 320)]
    assert features.combined_extractor([("mobilenet_v2", 64, 80, ())], weights=None).output_shape == (None, 1280)
