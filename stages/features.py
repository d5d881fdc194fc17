"""Stage 5: frozen ImageNet features of every labelled image, computed once (train.model frozen only).

    python -m stages.features

Reads data/split/folds.csv and the images it lists, and data/non_photos/index.csv (the generated non-photos the
photo check learns from). With train.model frozen, writes data/features/: features.npy (views × images ×
features, float32) and paths.csv (the images, labelled photos then non-photos, in that order), from the
extractor of train.frozen (its backbones, input size and pooled blocks) over max(views, 2) views: the photo,
its mirror image and, beyond, augmented copies (train.augment, seeded by train.seed). Every fold's head and the
released model's head train on these; a change to the head's params (regularization, inner_folds) does not
recompute them. Other models train on images: data/features/ then holds only an empty paths.csv.
With DASK_SCHEDULER_ADDRESS set, the photo and mirror views are computed in shards on that Dask cluster
(valence.learn.features_cluster); the file written is the same.
"""
import os

from valence import config, train_params
from valence.data.folds import MANIFEST_COLUMNS
from valence.errors import run_stage
from valence.files import atomic_dir, read_csv, write_csv
from valence.registry import FROZEN_MODEL

OUT, NON_PHOTOS = config.FEATURES, config.NON_PHOTOS_INDEX


def main():
    p = train_params.load()
    rows = read_csv(config.FOLDS, required=MANIFEST_COLUMNS) + read_csv(NON_PHOTOS, required=["path", "kind"])
    if p.model != FROZEN_MODEL:  # without TensorFlow: an empty paths.csv, so the stage has its output
        with atomic_dir(OUT) as tmp:
            write_csv(tmp / "paths.csv", [], ["path"])
        print(f"train.model is {p.model}: it trains on images, no frozen features needed")
        return
    from valence import runtime
    from valence.data.images import load_images
    from valence.learn import features

    runtime.configure(p.seed)
    f = p.frozen
    extractor = features.combined_extractor(f.extractors())
    address = os.environ.get("DASK_SCHEDULER_ADDRESS")  # Dask's own setting: where, not what (docs/guide.md: On a cluster)
    if address:
        from valence.learn.features_cluster import extract_on_cluster

        view_features = extract_on_cluster(address, extractor, [r["path"] for r in rows], f.views)
    else:
        images = load_images([r["path"] for r in rows], f.image_height, f.image_width, desc="photos and non-photos")
        view_features = features.extract(extractor, images, max(f.views, 2), p.augment, p.seed)
    features.save(OUT, [r["path"] for r in rows], view_features)
    print(f"wrote {OUT}: {view_features.shape[0]} views × {view_features.shape[1]} images × {view_features.shape[2]} features")


if __name__ == "__main__":
    run_stage(main)
