"""The generated non-photos: seeded, deterministic per image, and kinds that differ from each other."""
import numpy as np

from valence.data import non_photos


def test_each_image_is_the_same_whatever_else_is_generated():
    once = {(kind, i): pixels for kind, i, pixels in non_photos.generate(["document", "noise"], 3, seed=7)}
    again = {(kind, i): pixels for kind, i, pixels in non_photos.generate(["noise"], 2, seed=7)}
    for key, pixels in again.items():  # fewer images, another kind left out: the same pixels
        np.testing.assert_array_equal(pixels, once[key])
    other_seed = next(non_photos.generate(["noise"], 1, seed=8))[2]
    assert other_seed.shape != once[("noise", 0)].shape or not np.array_equal(other_seed, once[("noise", 0)])


def test_every_kind_draws_varied_rgb_images_unlike_the_other_kinds():
    """Images of one kind differ from each other, and a nearest-centroid rule on simple image statistics tells
    the kinds apart far above chance (1 in 13) on images it did not place the centroids with: the kinds are
    distinct."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import NearestCentroid
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    described, kinds = [], []
    for kind, _, pixels in non_photos.generate(list(non_photos.KINDS), 8, seed=0):
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        grey = pixels.astype(float).mean(axis=2)
        steps = np.abs(np.diff(grey, axis=1))
        described.append([grey.std(), (steps > 40).mean(), (steps < 1).mean(), pixels.std(axis=2).mean(),
                          len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)), (grey > 200).mean()])
        kinds.append(kind)
    images = list(non_photos.generate(list(non_photos.KINDS), 8, seed=0))
    assert len({p.tobytes() for _, _, p in images}) == len(images)  # no two alike, within or across kinds
    assert len(set(kinds)) >= 12
    accuracy = cross_val_score(make_pipeline(StandardScaler(), NearestCentroid()), np.array(described),
                               np.array(kinds), cv=4).mean()
    assert accuracy > 0.3, accuracy  # measured 0.47 with 13 kinds; chance 0.08
