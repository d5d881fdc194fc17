"""Seconds per explanation (valence.use.explain), each model file and method side by side: one JSON line.

    python benchmarks/explain_speed.py                     # models/model.keras and .tflite, 10 fold-0 photos
    python benchmarks/explain_speed.py --photos 20 --no-flip-average

Needs `dvc repro` (the models and data/split/test.csv). Each model explains the same photos one at a time with
its own method (the frozen release: its class activation map) and by occlusion (the method of models without
one), after one warm-up photo (the first call traces the graph); reports the median and the largest seconds per
photo, the ratio of the medians, and how the two files' maps differ.
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
    from valence.use.predict import load_photo

    paths = [ROOT / r["path"] for r in read_csv(ROOT / "data/split/test.csv", required=["path"])][:args.photos + 1]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    result, maps = {"machine": f"{cpu}, {runtime.cores()} cores", "photos": args.photos,
                    "flip_average": args.flip_average}, {}
    for model_path in args.models:
        classifier = open_classifier(ROOT / model_path)
        photos = [load_photo(p, classifier.height, classifier.width)[0] for p in paths]
        name = Path(model_path).suffix.lstrip(".")
        own = explain.method(classifier)
        for how in dict.fromkeys([own, explain.OCCLUSION]):
            classifier.logit_map = how == explain.CLASS_ACTIVATION  # occlusion: as for a model without the map
            seconds, found = [], []
            for i, pixels in enumerate(photos):
                started = time.perf_counter()
                heat = explain.explain_batch(classifier, pixels[None], args.flip_average)[1][0]
                if i:  # photo 0 warms up
                    seconds.append(time.perf_counter() - started)
                    found.append(heat)
            key = f"{name}_{how.split(':')[0].replace(' ', '_')}"
            maps[key] = found
            result[f"{key}_s_per_photo_median"] = round(statistics.median(seconds), 4)
            result[f"{key}_s_per_photo_max"] = round(max(seconds), 4)
        if own == explain.CLASS_ACTIVATION:
            result[f"{name}_occlusion_over_class_activation"] = round(
                result[f"{name}_occlusion_s_per_photo_median"] / result[f"{name}_class_activation_map_s_per_photo_median"], 1)
    for how in ("class_activation_map", "occlusion"):
        pair = [found for key, found in maps.items() if key.endswith(how)]
        if len(pair) == 2:
            result[f"largest_{how}_difference_keras_litert"] = float(np.abs(np.array(pair[0]) - np.array(pair[1])).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
