"""Photos per second in-process against a Dask cluster on the same cores, for predict and the feature pass.

    python benchmarks/cluster_speed.py [--photos 2000] [--model models/model.keras]

Needs the OASIS photos (`dvc repro`) and, for the feature pass, the Keras cache of the README (KERAS_HOME).
The photos are OASIS' own, repeated under new names up to --photos (hard links in a temporary folder). Each
configuration runs once, side by side, nothing else running:
  predict   `valence predict` (a process, start-up included): in-process; --scheduler local:2; a `dask
            scheduler` + two one-thread `dask worker` processes on 127.0.0.1
  features  the features stage's pass (photo + mirror, Lite2 + MobileNetV2): in-process; the same scheduler
            and workers (valence.learn.features_cluster)
  overhead  the round trip of an empty shard through that scheduler (median of 50)
Prints one JSON line, writes it to benchmarks/results/cluster_speed.json, and projects the wall time for
1,000,000 photos on 10, 100 and 1,000 worker cores from the per-core rate measured here and the bytes each
photo moves (the photo read by a worker, its result sent to the client).
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

import numpy as np

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


def timed_features(paths, address=None):
    from valence import train_params
    from valence.data.images import load_images
    from valence.learn import features
    from valence.learn.features_cluster import extract_on_cluster

    f = train_params.load().frozen
    extractor = features.combined_extractor(f.extractors())
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
    """Hours for 1,000,000 photos on n worker cores, at the measured per-core rate plus each shard's overhead."""
    per_photo = 1 / rate_per_core + overhead_s / shard
    return {cores: round(1_000_000 * per_photo / cores / 3600, 2) for cores in (10, 100, 1000)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--model", default="models/model.keras")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    result = {"photos": args.photos, "cores": cores, "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths, photo_bytes = photos(folder, args.photos)
        result["mean_photo_kb"] = round(photo_bytes / len(paths) / 1024, 1)
        result["predict_in_process_s"] = round(timed_predict(folder, args.model), 1)
        result["predict_local_cluster_s"] = round(timed_predict(folder, args.model, f"local:{cores}"), 1)
        cluster = Cluster(workers=cores)
        try:
            result["predict_scheduler_s"] = round(timed_predict(folder, args.model, cluster.address), 1)
            result["shard_overhead_ms"] = round(1000 * shard_overhead(cluster.address), 2)
            seconds, feature_bytes = timed_features(paths, cluster.address)
            result["features_scheduler_s"] = round(seconds, 1)
        finally:
            cluster.stop()
        result["features_in_process_s"] = round(timed_features(paths)[0], 1)
    n = args.photos
    for work in ("predict", "features"):
        base = result[f"{work}_in_process_s"]
        result[f"{work}_ratio_scheduler"] = round(base / result[f"{work}_scheduler_s"], 3)  # ≥ 0.9: the target
        rate = n / result[f"{work}_scheduler_s"] / cores
        result[f"{work}_photos_per_s_per_core"] = round(rate, 2)
        result[f"{work}_hours_for_1M_on_cores"] = projection(rate, result["shard_overhead_ms"] / 1000)
    result["predict_ratio_local_cluster"] = round(result["predict_in_process_s"] / result["predict_local_cluster_s"], 3)
    result["bytes_per_photo"] = {"read": round(photo_bytes / n), "predict_result": 60, "features_result": feature_bytes}
    print(json.dumps(result))
    out = ROOT / "benchmarks/results/cluster_speed.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
