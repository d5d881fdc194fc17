"""The features stage on a Dask cluster: set DASK_SCHEDULER_ADDRESS (Dask's own setting) and `dvc repro`.

The client builds the extractor exactly as in-process (so it needs the ImageNet weights, the workers do not),
saves it once and installs the file on every worker (valence.cluster.send_model); each worker loads it once
and computes the photo and its mirror for shards of photos it reads from the shared file system. Shards are
a multiple of the 32-image batch, so each forward pass holds the same photos as in-process. The stage writes
data/features only when every shard is in, as in-process. Augmented views (train.frozen.views > 2) depend on
the position of each batch in the whole set and stay in-process.
"""
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valence.errors import PipelineError
from valence.learn.features import BATCH

SHARD = 8 * BATCH  # photos a task: whole batches


def extract_shard(paths, model, height, width):
    """On a worker: float32 (2, len(paths), features), the photo and its mirror, with the extractor loaded once."""
    from valence import cluster, runtime
    from valence.data.images import load_images
    from valence.learn import features, models

    def opener(path):
        runtime.configure()
        return models.load(path)

    extractor = cluster.worker_model(model, opener)
    images = load_images(paths, height, width, desc="shard")
    return np.stack([features.extract_view(extractor, images, view) for view in (0, 1)])


def extract_on_cluster(address, extractor, paths, views, shard_size=SHARD):
    """float32 (2, len(paths), features) of ``extractor`` (a Keras model, images at its input size) on the
    cluster at ``address``, in the order of ``paths``."""
    from valence import cluster

    if views > 2:
        raise PipelineError(f"train.frozen.views is {views}: augmented views are computed in-process only; "
                            "unset DASK_SCHEDULER_ADDRESS or use views ≤ 2")
    if shard_size % BATCH:
        raise PipelineError(f"a features shard must be whole batches of {BATCH} images, got {shard_size}")
    _, height, width, _ = extractor.input_shape
    shards = [[str(Path(p).resolve()) for p in paths[i:i + shard_size]] for i in range(0, len(paths), shard_size)]
    with cluster.session(address) as client:
        with tempfile.TemporaryDirectory() as folder:
            saved = Path(folder) / "extractor.keras"
            extractor.save(saved)
            model = cluster.send_model(client, saved)
        parts = [None] * len(shards)
        with tqdm(total=len(paths), desc=f"features on {address}", unit="img") as bar:
            shard_map = cluster.ShardMap(client, extract_shard, shards, model, height, width)
            for i, result in shard_map:
                parts[i] = result
                bar.update(len(shards[i]))
        retried = shard_map.retried
    print(f"features of {len(paths)} images in {len(shards)} shards on {address}"
          + (f"; {retried} shard(s) ran again after their worker was lost" if retried else ""))
    return np.concatenate(parts, axis=1)
