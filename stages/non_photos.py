"""Stage: generated images that are not photos, for the photo check (valence.data.non_photos).

    python -m stages.non_photos

Draws non_photos.per_kind images of each of non_photos.kinds (documents, charts, interface screenshots, flat
colours, noise, line art …), seeded by non_photos.seed, and writes data/non_photos/: <kind>/<kind> <index>.png and
index.csv (path, kind). The features stage computes their features beside the photos'; the fold stages and the
release train the photo check on them (docs/model-card.md: Not a photo?). per_kind 0 writes an empty index: no photo check.
"""
from valence import config, params
from valence.data import non_photos
from valence.errors import PipelineError, run_stage
from valence.files import atomic_dir, write_csv

OUT = config.NON_PHOTOS


def main():
    p = params.load("non_photos")
    unknown = [kind for kind in p.kinds if kind not in non_photos.KINDS]
    if unknown:
        raise PipelineError(f"non_photos.kinds: no kind named {', '.join(unknown)}; the kinds are "
                            f"{', '.join(non_photos.KINDS)}")
    from PIL import Image
    from tqdm import tqdm

    rows = []
    with atomic_dir(OUT) as tmp:  # every image and the index, or none
        drawn = non_photos.generate(p.kinds, p.per_kind, p.seed)
        for kind, index, pixels in tqdm(drawn, total=len(p.kinds) * p.per_kind, desc="non-photos", unit="image"):
            (tmp / kind).mkdir(exist_ok=True)
            Image.fromarray(pixels).save(tmp / kind / f"{kind} {index:03d}.png")
            rows.append({"path": f"{OUT}/{kind}/{kind} {index:03d}.png", "kind": kind})
        write_csv(tmp / "index.csv", rows, ["path", "kind"])
    print(f"wrote {OUT}: {len(rows)} generated non-photos of {len(p.kinds) if rows else 0} kinds")


if __name__ == "__main__":
    run_stage(main)
