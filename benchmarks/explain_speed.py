"""Seconds per explanation (valence.use.explain's occlusion map), each model file side by side: one JSON line.

    python benchmarks/explain_speed.py                     # models/model.keras and .tflite, 10 fold-0 photos
    python benchmarks/explain_speed.py --photos 20 --no-flip-average

Needs `dvc repro` (the models and data/split/test.csv). Each model explains the same photos one at a time, as
`python -m valence explain` and POST /explain do, after one warm-up photo (the first call traces the graph);
reports the median and the largest seconds per photo, and how the two files' maps differ.
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from valence.files import read_csv

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=["models/model.keras", "models/model.tflite"])
    parser.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=True,
                        help="score each covered copy and its mirror (as evaluate.flip_average: true)")
    args = parser.parse_args()
    from valence import runtime
    from valence.use import explain
    from valence.use.classifier import open_classifier
    from valence.use.predict import load_photo, score_images

    paths = [ROOT / r["path"] for r in read_csv(ROOT / "data/split/test.csv", required=["path"])][:args.photos + 1]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    result, maps = {"machine": f"{cpu}, {runtime.cores()} cores",
                    "photos": args.photos, "flip_average": args.flip_average, "method": explain.METHOD}, {}
    for model_path in args.models:
        classifier = open_classifier(ROOT / model_path)
        photos = [load_photo(p, classifier.height, classifier.width)[0] for p in paths]
        seconds, maps[model_path] = [], []
        for i, pixels in enumerate(photos):
            started = time.perf_counter()
            _, heat = explain.explain(lambda batch: score_images(classifier, batch, args.flip_average), pixels)
            if i:  # photo 0 warms up
                seconds.append(time.perf_counter() - started)
                maps[model_path].append(heat)
        name = Path(model_path).suffix.lstrip(".")
        result[f"{name}_s_per_photo_median"] = round(statistics.median(seconds), 3)
        result[f"{name}_s_per_photo_max"] = round(max(seconds), 3)
    if len(maps) == 2:
        first, second = maps.values()
        result["largest_map_difference"] = float(np.abs(np.array(first) - np.array(second)).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
