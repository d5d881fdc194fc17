"""How faithful is each map? A deletion test: cover the cells a map ranks highest and see P(Positive) fall.

    python benchmarks/explain_faithfulness.py                  # fold 0's 144 test photos, models/model.tflite
    python benchmarks/explain_faithfulness.py --photos 48 --model models/model.keras

Needs `dvc repro` (the release and data/split/test.csv). For each photo, both maps valence.use.explain makes:
the release's class activation map (its LOGIT_MAP output, one pass) and the occlusion map (50 passes), with flip
averaging as predict scores. Both are brought onto one 8 × 8 grid of equal cells (the occlusion map's own; the
class activation map spread by area, valence.learn.heads.cell_shares, which keeps its sum), then for k = 4, 8 and
16 cells (6 %, 12.5 %, 25 % of the photo) the k cells a map ranks highest are painted over in the photo's mean
colour and the photo scored again: the drop in P(Positive) says how much of what pushed the score up the map
found. A good map drops it more than a random choice of k cells (the mean of 5 seeded draws, here as a floor).
The occlusion map is made by covering patches in that same mean colour, so this test is its home ground.
Prints one JSON line and writes benchmarks/results/explain_faithfulness.json.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from valence.files import read_csv

ROOT = Path(__file__).resolve().parent.parent
COUNTS = (4, 8, 16)  # cells of 64 covered
RANDOM_DRAWS = 5


def on_grid(heat, grid):
    """``heat`` (rows, columns) spread by area onto grid × grid cells."""
    from valence.learn.heads import cell_shares

    return cell_shares(heat.shape[0], grid).T @ heat @ cell_shares(heat.shape[1], grid)


def covered(image, cells, grid):
    """``image`` with the (row, column) ``cells`` of a grid × grid partition painted in its mean colour."""
    from valence.use.explain import cell_edges

    rows, cols = cell_edges(image.shape[0]), cell_edges(image.shape[1])
    out, fill = image.copy(), image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    for r, c in cells:
        out[rows[r]:rows[r + 1], cols[c]:cols[c + 1]] = fill
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=144)
    parser.add_argument("--model", default="models/model.tflite")
    args = parser.parse_args()
    from valence.config import PROBABILITY
    from valence.use import explain
    from valence.use.classifier import open_classifier
    from valence.use.predict import load_photo, score_images

    classifier = open_classifier(ROOT / args.model)
    if not classifier.logit_map:
        raise SystemExit(f"{args.model} gives no class activation map (LOGIT_MAP): nothing to compare")
    grid, rng = explain.GRID, np.random.default_rng(0)
    paths = [ROOT / r["path"] for r in read_csv(ROOT / "data/split/test.csv", required=["path"])][:args.photos]
    drops = {how: {k: [] for k in COUNTS} for how in ("class_activation_map", "occlusion", "random")}
    seconds = {"class_activation_map": 0.0, "occlusion": 0.0}
    for path in paths:
        image = load_photo(path, classifier.height, classifier.width)[0]
        maps = {}
        for how, method in (("class_activation_map", explain.CLASS_ACTIVATION), ("occlusion", explain.OCCLUSION)):
            classifier.logit_map = method == explain.CLASS_ACTIVATION
            started = time.perf_counter()
            scores, found = explain.explain_batch(classifier, image[None], flip_average=True)
            seconds[how] += time.perf_counter() - started
            maps[how] = on_grid(found[0], grid) if found[0].shape != (grid, grid) else found[0]
        probability = float(scores[PROBABILITY][0])
        order = {how: [divmod(int(i), grid) for i in np.argsort(-heat, axis=None, kind="stable")]
                 for how, heat in maps.items()}
        for k in COUNTS:
            batch = [covered(image, order[how][:k], grid) for how in maps]
            batch += [covered(image, [divmod(int(i), grid) for i in rng.choice(grid * grid, k, replace=False)], grid)
                      for _ in range(RANDOM_DRAWS)]
            after = score_images(classifier, np.stack(batch), flip_average=True)
            for how, value in zip(maps, after):
                drops[how][k].append(probability - float(value))
            drops["random"][k].append(probability - float(np.mean(after[len(maps):])))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    result = {"machine": cpu, "model": args.model, "photos": len(paths), "grid": grid, "flip_average": True,
              "mean_drop_in_p_positive": {how: {f"{k}_cells": round(float(np.mean(v)), 4) for k, v in by_k.items()}
                                          for how, by_k in drops.items()},
              "share_of_photos_cam_drops_more_than_occlusion": {
                  f"{k}_cells": round(float(np.mean(np.array(drops["class_activation_map"][k]) > np.array(drops["occlusion"][k]))), 3)
                  for k in COUNTS},
              "seconds_per_photo": {how: round(s / len(paths), 4) for how, s in seconds.items()}}
    print(json.dumps(result))
    (ROOT / "benchmarks/results/explain_faithfulness.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
