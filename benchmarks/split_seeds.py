"""Each model's test metrics as mean ± std over several split seeds, run as DVC experiments.

    python benchmarks/split_seeds.py                                   # 3 models × split seeds 21, 22, 23
    python benchmarks/split_seeds.py --models small_cnn --seeds 1 2 3 4 5

A 144-image test split is noisy, so one number per model says little. Every (model, seed) pair runs as
`dvc exp run --temp -n <model>-split<seed> -S train.model=… -S split.seed=…` on top of HEAD: the workspace
is left alone and experiments already run on this commit are reused, not re-run. Prints a Markdown table.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

METRICS = ("roc_auc", "balanced_accuracy", "accuracy", "average_precision")


def dvc(*args):
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=True, capture_output=True, text=True).stdout


def experiments_on_head():
    """{experiment name: metrics dict} for the experiments whose baseline is the current commit."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    found = {}
    for baseline in json.loads(dvc("exp", "show", "--json")):
        if baseline["rev"] != head:
            continue
        for experiment in baseline.get("experiments") or []:
            rev = experiment["revs"][0]
            metrics = ((rev.get("data") or {}).get("metrics") or {}).get("metrics/metrics.json")
            if rev.get("name") and metrics:
                found[rev["name"]] = metrics["data"]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "small_cnn", "seed_baseline"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[21, 22, 23])
    args = parser.parse_args()
    done = experiments_on_head()
    for model in args.models:
        for seed in args.seeds:
            name = f"{model}-split{seed}"
            if name in done:
                continue
            started = time.monotonic()
            print(f"running {name} …", file=sys.stderr, flush=True)
            dvc("exp", "run", "--temp", "-n", name, "-S", f"train.model={model}", "-S", f"split.seed={seed}")
            print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    done = experiments_on_head()
    print(f"| model | split seeds | {' | '.join(METRICS)} |")
    print("|---|---|" + "---|" * len(METRICS))
    for model in args.models:
        runs = [done[f"{model}-split{seed}"] for seed in args.seeds]
        cells = [f"{statistics.mean(r[m] for r in runs):.3f} ± {statistics.stdev(r[m] for r in runs):.3f}"
                 if len(runs) > 1 else f"{runs[0][m]:.3f}" for m in METRICS]
        print(f"| `{model}` | {', '.join(map(str, args.seeds))} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
