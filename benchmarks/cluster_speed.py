"""Photos per second in-process against a Dask cluster on the same cores, for predict (each model file) and the
feature pass, and what they project for a million photos.

    python benchmarks/cluster_speed.py [--photos 1000] [--models models/model.tflite models/model.keras]

Needs the OASIS photos (`dvc repro`) and, for the feature pass, the Keras cache of the README (KERAS_HOME).
The photos are OASIS' own, repeated under new names up to --photos (hard links in a temporary folder). Each
configuration runs once, side by side, nothing else running:
  predict   `valence predict` (a process, start-up included, flip averaging as params.yaml says) with each
            --models file: in-process and on a `dask scheduler` + two one-thread `dask worker` processes on
            127.0.0.1; the first file also on --scheduler local:2
  features  the features stage's pass (photo + mirror, Lite2 + MobileNetV2, Keras as the stage runs it):
            in-process and on the same scheduler and workers (valence.learn.features_cluster); and, what if,
            the same extractor exported to LiteRT, in-process (not the stage's: its features would move by
            ~1e-6 and every stored number with them)
  overhead  the round trip of an empty shard through that scheduler (median of 50)
Prints one JSON line, writes it to benchmarks/results/cluster_speed.json, and projects the wall time for
1,000,000 photos on 10, 100 and 1,000 worker cores from the per-core rate measured here (on the scheduler) and
the bytes each photo moves (the photo read by a worker, its result sent to the client), against the targets:
predict ≤ 15 min on 100 cores (≥ 11.1 photos/s a core), features ≤ 30 min.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import Cluster, environment  # noqa: E402  (the tests' scheduler + workers on 127.0.0.1)


def photos(folder, count):
    """``count`` hard links to the OASIS photos, cycling, in ``folder``; their total bytes."""
    source = sorted((ROOT / "data/images").rglob("*.jpg"))
    if not source:
        sys.exit("no photos under data/images: run `dvc repro unzip` first")
    paths = []
    for i in range(count):
        paths.append(folder / f"{i:07d}.jpg")
        os.link(source[i % len(source)], paths[-1])
    return paths, sum(p.stat().st_size for p in paths)


def timed_predict(folder, model, scheduler=None):
    args = [sys.executable, "-m", "valence", "predict", str(folder), "--out", str(folder.parent / "p.csv"),
            "--force", "--model", model] + (["--scheduler", scheduler] if scheduler else [])
    start = time.monotonic()
    subprocess.run(args, cwd=ROOT, env=environment(), check=True, capture_output=True)
    return time.monotonic() - start


def timed_features(paths, address=None, litert=False):
    from valence import train_params
    from valence.data.images import load_images
    from valence.learn import features, models
    from valence.learn.features_cluster import extract_on_cluster

    f = train_params.load().frozen
    extractor = features.combined_extractor(f.extractors())
    if litert:  # what if: the extractor run by LiteRT, photo and mirror, as predict runs a .tflite model
        from valence.use.classifier import LiteRTClassifier
        from valence.use.predict import score_all

        with tempfile.TemporaryDirectory() as tmp:
            models.export_litert(extractor, Path(tmp) / "extractor.tflite")
            run = LiteRTClassifier(Path(tmp) / "extractor.tflite")
            start = time.monotonic()
            images = load_images([str(p) for p in paths], f.image_height, f.image_width)
            for i in range(0, len(images), 64):
                score_all(run, images[i:i + 64], flip_average=True)
            return time.monotonic() - start, None
    start = time.monotonic()
    if address:
        out = extract_on_cluster(address, extractor, [str(p) for p in paths], 2)
    else:
        out = features.extract(extractor, load_images([str(p) for p in paths], f.image_height, f.image_width), 2)
    return time.monotonic() - start, out.shape[2] * out.shape[0] * out.itemsize


def shard_overhead(address, rounds=50):
    from distributed import Client

    with Client(address) as client:
        times = []
        for _ in range(rounds):
            start = time.monotonic()
            client.submit(len, [], pure=False).result()
            times.append(time.monotonic() - start)
    return statistics.median(times)


def projection(rate_per_core, overhead_s, shard=256):
    """Minutes for 1,000,000 photos on n worker cores, at the measured per-core rate plus each shard's overhead."""
    per_photo = 1 / rate_per_core + overhead_s / shard
    return {cores: round(1_000_000 * per_photo / cores / 60, 1) for cores in (10, 100, 1000)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--models", nargs="+", default=["models/model.tflite", "models/model.keras"])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    result = {"photos": args.photos, "cores": cores, "cpu": cpu, "models": args.models}
    names = {model: Path(model).suffix.lstrip(".") for model in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths, photo_bytes = photos(folder, args.photos)
        result["mean_photo_kb"] = round(photo_bytes / len(paths) / 1024, 1)
        for model, name in names.items():
            result[f"predict_{name}_in_process_s"] = round(timed_predict(folder, model), 1)
        result["predict_local_cluster_s"] = round(timed_predict(folder, args.models[0], f"local:{cores}"), 1)
        cluster = Cluster(workers=cores)
        try:
            for model, name in names.items():
                result[f"predict_{name}_scheduler_s"] = round(timed_predict(folder, model, cluster.address), 1)
            result["shard_overhead_ms"] = round(1000 * shard_overhead(cluster.address), 2)
            seconds, feature_bytes = timed_features(paths, cluster.address)
            result["features_scheduler_s"] = round(seconds, 1)
        finally:
            cluster.stop()
        result["features_in_process_s"] = round(timed_features(paths)[0], 1)
        result["features_litert_in_process_s"] = round(timed_features(paths, litert=True)[0], 1)
    n, overhead = args.photos, result["shard_overhead_ms"] / 1000
    for work in [f"predict_{name}" for name in names.values()] + ["features"]:
        result[f"{work}_ratio_scheduler"] = round(result[f"{work}_in_process_s"] / result[f"{work}_scheduler_s"], 3)
        rate = n / result[f"{work}_scheduler_s"] / cores
        result[f"{work}_photos_per_s_per_core"] = round(rate, 2)
        result[f"{work}_minutes_for_1M_on_cores"] = projection(rate, overhead)
    rate = n / result["features_litert_in_process_s"] / cores
    result["features_litert_photos_per_s_per_core"] = round(rate, 2)
    result["features_litert_minutes_for_1M_on_cores"] = projection(rate, overhead)
    result[f"predict_{names[args.models[0]]}_ratio_local_cluster"] = round(
        result[f"predict_{names[args.models[0]]}_in_process_s"] / result["predict_local_cluster_s"], 3)
    result["targets"] = {"predict_photos_per_s_per_core": round(1_000_000 / (15 * 60) / 100, 1),
                         "features_minutes_on_100_cores": 30}
    result["bytes_per_photo"] = {"read": round(photo_bytes / n), "predict_result": 60, "features_result": feature_bytes}
    print(json.dumps(result))
    out = ROOT / "benchmarks/results/cluster_speed.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
