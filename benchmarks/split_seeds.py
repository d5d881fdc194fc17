"""Each model's out-of-fold metrics as mean ± std over several split seeds, run as queued DVC experiments.

    python benchmarks/split_seeds.py                                   # 3 models × split seeds 21, 22, 23
    python benchmarks/split_seeds.py --models small_cnn --seeds 1 2 3 4 5 --jobs 2

The folds move with split.seed, and so does the headline a little: this says by how much. Every (model, seed) pair is queued as
`dvc exp run --queue -n <model>-split<seed> -S train.model=… -S split.seed=…` on top of HEAD, then
`dvc queue start -j <jobs>` runs them in temporary copies: the workspace is left alone, and experiments
already run on this commit are reused, not re-run. Prints a Markdown table.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

METRICS = ("roc_auc", "balanced_accuracy", "accuracy", "average_precision")
EVALUATE_METRICS = "dvclive/evaluate/metrics.json"  # dvclive's summary: the headline under "out_of_fold"


def dvc(*args):
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=True, capture_output=True, text=True).stdout


def experiments_on_head():
    """{experiment name: out-of-fold metrics} for the experiments whose baseline is the current commit."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    found = {}
    for baseline in json.loads(dvc("exp", "show", "--json")):
        if baseline["rev"] != head:
            continue
        for experiment in baseline.get("experiments") or []:
            rev = experiment["revs"][0]
            metrics = ((rev.get("data") or {}).get("metrics") or {}).get(EVALUATE_METRICS)
            if rev.get("name") and metrics:
                found[rev["name"]] = metrics["data"]["out_of_fold"]
    return found


def run_queued(names, jobs):
    """Start the queue's workers and wait until every experiment in ``names`` has finished or failed."""
    dvc("queue", "start", "-j", str(jobs))
    while True:
        time.sleep(5)
        status = dvc("queue", "status")
        waiting = [line for line in status.splitlines() if any(n in line for n in names)
                   and ("Queued" in line or "Running" in line)]
        if not waiting:
            return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite2", "mobilenet_v2", "small_cnn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[21, 22, 23])
    parser.add_argument("--jobs", type=int, default=1, help="experiments at a time (each uses every core)")
    args = parser.parse_args()
    done = experiments_on_head()
    queued, status = [], ""
    for model in args.models:
        for seed in args.seeds:
            name = f"{model}-split{seed}"
            if name not in done:
                dvc("exp", "run", "--queue", "-n", name, "-S", f"train.model={model}", "-S", f"split.seed={seed}")
                queued.append(name)
    if queued:
        started = time.monotonic()
        print(f"running {len(queued)} queued experiments, {args.jobs} at a time …", file=sys.stderr, flush=True)
        status = run_queued(queued, args.jobs)
        print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    done = experiments_on_head()
    missing = [f"{m}-split{s}" for m in args.models for s in args.seeds if f"{m}-split{s}" not in done]
    if missing:
        sys.exit(f"error: {', '.join(missing)} did not finish (`dvc queue logs <name>`):\n{status}")
    print(f"| model | split seeds | {' | '.join(METRICS)} |")
    print("|---|---|" + "---|" * len(METRICS))
    for model in args.models:
        runs = [done[f"{model}-split{seed}"] for seed in args.seeds]
        cells = [f"{statistics.mean(r[m] for r in runs):.3f} ± {statistics.stdev(r[m] for r in runs):.3f}"
                 if len(runs) > 1 else f"{runs[0][m]:.3f}" for m in METRICS]
        print(f"| `{model}` | {', '.join(map(str, args.seeds))} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
