"""How the data stages scale: download (demo) → unzip → audit → split at growing numbers of photos, each stage's
wall time and peak memory, and the feature pass' cost per photo to extrapolate training.

    python benchmarks/scale.py                            # 1,000, 10,000 and 100,000 demo faces (48×60)
    python benchmarks/scale.py --sizes 1000 10000 --out benchmarks/results/scale.json

Each size runs in a fresh copy of the project's code and params (a temporary folder) with download.source demo
at download.demo_images_per_class = size / 2; every stage is its own process, as `dvc repro` runs it, and its
peak RSS is that process' own (os.wait4). The feature pass is the features stage's frozen extractor
(train.frozen) on 64 photos after a warm-up batch, flip included (2 views): seconds per photo, times the size,
is what the features stage would take; the folds' heads and the release then add seconds, not hours. Prints a
Markdown table and writes JSON with the machine's CPU.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("download", "unzip", "audit", "split")
COPIED = ("stages", "valence", "params.yaml")


def cpu():
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_stage(stage, work):
    """(seconds, peak RSS in MB) of `python -m stages.<stage>` in ``work``; a failure stops the benchmark."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=work, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if status:
        raise SystemExit(f"{stage} failed in {work}:\n{process.stderr.read()[-2000:]}")
    return round(seconds, 1), round(usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def one_size(size, height, width):
    with tempfile.TemporaryDirectory(prefix=f"scale-{size}-") as folder:
        work = Path(folder)
        for name in COPIED:
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, work / name)
        document = yaml.safe_load((work / "params.yaml").read_text())
        document["download"].update(source="demo", demo_images_per_class=size // 2, demo_height=height,
                                    demo_width=width)
        (work / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        result = {"images": size}
        for stage in STAGES:
            result[stage] = dict(zip(("seconds", "peak_rss_mb"), run_stage(stage, work)))
            print(f"{size} images: {stage} {result[stage]}", flush=True)
        audit = json.loads((work / "metrics/audit.json").read_text())
        split = json.loads((work / "metrics/split.json").read_text())
        result.update(audit_json_kb=round((work / "data/audit.json").stat().st_size / 1024),
                      near_duplicate_clusters=audit["near_duplicate_clusters"], largest_cluster=audit["largest_cluster"],
                      clustered_images=audit["near_duplicate_pairs"] + audit["near_duplicate_clusters"],
                      fold_shares=split["fold_shares"], largest_group=split["largest_group"])
        return result


def feature_seconds_per_photo(photos=64):
    """The features stage's extractor on ``photos`` photos and their mirrors, after a warm-up: seconds per photo."""
    import numpy as np

    from valence import runtime, train_params
    from valence.learn import features

    p = train_params.load(ROOT / "params.yaml").frozen
    runtime.configure(0)
    extractor = features.combined_extractor(p.extractors())
    images = np.random.default_rng(0).integers(0, 256, (photos, p.image_height, p.image_width, 3), dtype=np.uint8)
    features.extract(extractor, images[:8], 2)
    started = time.monotonic()
    features.extract(extractor, images, 2)
    return (time.monotonic() - started) / photos


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=60)
    parser.add_argument("--no-features", action="store_true", help="skip the feature pass (needs the ImageNet weights)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/scale.json"))
    args = parser.parse_args()
    results = [one_size(size, args.height, args.width) for size in args.sizes]
    per_photo = None if args.no_features else feature_seconds_per_photo()
    machine = f"{cpu()}, {os.cpu_count()} cores"
    print(f"\n{machine}; demo faces {args.height}×{args.width}\n")
    print("| photos | " + " | ".join(f"{s} s / MB" for s in STAGES)
          + " | through split | audit.json | in a near-duplicate cluster | largest group |")
    print("|---|" + "---|" * (len(STAGES) + 4))
    for r in results:
        total = sum(r[s]["seconds"] for s in STAGES)
        cells = " | ".join(f"{r[s]['seconds']} / {r[s]['peak_rss_mb']}" for s in STAGES)
        print(f"| {r['images']:,} | {cells} | {total:.0f} s | {r['audit_json_kb']} KB | "
              f"{r['clustered_images'] / r['images']:.0%} | {r['largest_group']['images']} "
              f"({r['largest_group']['share']:.1%}) |")
    if len(results) > 1:
        first, last = results[-2], results[-1]
        ratio = sum(last[s]["seconds"] for s in STAGES) / sum(first[s]["seconds"] for s in STAGES)
        print(f"\n{last['images']:,} took {ratio:.1f}× the time of {first['images']:,} through split")
    if per_photo is not None:
        print(f"feature pass (train.frozen, 2 views): {per_photo * 1000:.0f} ms per photo → "
              + ", ".join(f"{r['images']:,}: {per_photo * r['images'] / 60:.0f} min" for r in results))
    Path(args.out).write_text(json.dumps({"machine": machine, "demo_size": [args.height, args.width],
                                          "sizes": results, "feature_seconds_per_photo": per_photo}, indent=2) + "\n")


if __name__ == "__main__":
    main()
