"""k-fold cross-validation of a model on the whole labelled set, folds grouped by concept: an honest estimate.

    python benchmarks/cross_validate.py                                  # mobilenet_v2, 5 grouped folds
    python benchmarks/cross_validate.py --model small_cnn
    python benchmarks/cross_validate.py --group-by none                  # random folds, to show the gap
    python benchmarks/cross_validate.py --probe --repeats 3              # the frozen-feature reference
    python benchmarks/cross_validate.py -S mobilenet_v2.fine_tune_blocks=5 --label more-blocks

Needs data/labels.csv (`dvc repro unzip`; data/audit.json from `dvc repro audit` joins near-copies into
groups too) and, offline, KERAS_HOME as in the README. Each fold trains with the package's own
`valence.training.train` and params.yaml's train section (-S overrides keys under train), early stopping on a
grouped validation slice of the training folds, and is scored once on its held-out fold. Folds come from
split.seed (+1, +2 for more repeats): StratifiedGroupKFold, so no concept is on both sides.

--probe is the reference the fine-tune must beat: frozen ImageNet MobileNetV2 at 224×224, global-average
features averaged over the image and its mirror, and a logistic regression (C 0.1, balanced classes).

Every finished fold is appended to benchmarks/results/<label>.csv at once, and a rerun skips the folds
already there, so a long run can be stopped and resumed. Prints mean ± std over the folds.
"""
import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from valence import params  # noqa: E402
from valence.audit import near_duplicate_pairs  # noqa: E402
from valence.errors import run_stage  # noqa: E402
from valence.files import read_csv  # noqa: E402
from valence.splitting import MANIFEST_COLUMNS, grouped_folds, merge_groups  # noqa: E402

METRICS = ("roc_auc", "balanced_accuracy", "average_precision", "accuracy")
# validation_auc: the trained model's AUC on its validation slice of the training folds (the best epoch of its
# last phase, which early stopping restores): what variants are chosen by, never the held-out fold
COLUMNS = ["repeat", "fold", "n_train", "n_test", "test_groups", "positive_share", *METRICS, "validation_auc",
           "seconds"]


def train_params(overrides):
    """params.yaml's train section with ``key=value`` overrides (keys below train, values as YAML)."""
    document = (yaml.safe_load(params.PARAMS_FILE.read_text()) if params.PARAMS_FILE.exists() else None) or {}
    section = document.get("train") or {}
    for override in overrides:
        key, _, value = override.partition("=")
        node = section
        *parents, last = key.removeprefix("train.").split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = yaml.safe_load(value)
    p = params.parse(params.TrainParams, section, "train")
    p.check()
    return p


def labelled_rows(group_by):
    rows = read_csv("data/labels.csv", required=MANIFEST_COLUMNS)
    if group_by == "none":
        return [{**r, "group": ""} for r in rows]
    audit = Path("data/audit.json")
    return merge_groups(rows, near_duplicate_pairs(audit) if audit.exists() else [])


def probe_scorer():
    """(train rows, test rows) → P(Positive) of the test rows, from frozen features computed once per image."""
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from valence import compute
    from valence.datasets import targets
    from valence.images import load_images

    compute.configure(0)
    backbone = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights="imagenet",
                                              pooling="avg")
    cache = {}

    def features(rows):
        missing = [r["path"] for r in rows if r["path"] not in cache]
        if missing:
            images = load_images(missing, 224, 224, desc="probe").astype("float32") / 127.5 - 1
            both = [backbone.predict(x, batch_size=64, verbose=0) for x in (images, images[:, :, ::-1])]
            cache.update(zip(missing, (both[0] + both[1]) / 2))
        return np.stack([cache[r["path"]] for r in rows])

    def score(train_rows, test_rows):
        model = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000)
        model.fit(features(train_rows), targets(train_rows))
        return model.predict_proba(features(test_rows))[:, 1], None

    return score


def model_scorer(p):
    def score(train_rows, test_rows):
        import keras

        from valence import models, training

        keras.backend.clear_session()
        model, history = training.train(p, train_rows)
        last_phase = [row["val_auc"] for row in history if row["phase"] == history[-1]["phase"] and "val_auc" in row]
        return (models.predict(model, [r["path"] for r in test_rows], 64, desc="held-out fold"),
                max(last_phase) if last_phase else None)

    return score


def done_folds(path):
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=params.MODEL_NAMES, help="train.model (default: params.yaml's)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1, help="fold draws from split.seed, split.seed + 1, …")
    parser.add_argument("--group-by", choices=("concept", "none"), default="concept")
    parser.add_argument("--probe", action="store_true", help="the frozen-feature logistic regression instead")
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a train param, e.g. -S mobilenet_v2.epochs=10")
    parser.add_argument("--label", help="results file name (default from the model and grouping)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    p = train_params(args.overrides + ([f"model={args.model}"] if args.model else []))
    seed = params.load("split").seed
    name = "probe" if args.probe else p.model
    label = args.label or f"{name}-{'grouped' if args.group_by == 'concept' else 'random'}"
    out = args.results_dir / f"{label}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = labelled_rows(args.group_by)
    score = probe_scorer() if args.probe else model_scorer(p)
    if out.exists() and out.read_text().split("\n", 1)[0] != ",".join(COLUMNS):
        sys.exit(f"{out}: written by another version of this script (other columns); move it away to start anew")
    done = {(int(r["repeat"]), int(r["fold"])) for r in done_folds(out)}
    if not out.exists():
        with out.open("w", newline="") as f:
            csv.DictWriter(f, COLUMNS).writeheader()
    from valence.datasets import targets
    from valence.evaluation import binary_metrics

    for repeat in range(args.repeats):
        folds = grouped_folds(rows, args.folds, seed + repeat, what="data/labels.csv")
        for fold, (train_rows, test_rows) in enumerate(folds):
            if (repeat, fold) in done:
                continue
            started = time.monotonic()
            print(f"{label}: repeat {repeat}, fold {fold + 1}/{args.folds}: {len(train_rows)} train, "
                  f"{len(test_rows)} held out", flush=True)
            probability, validation_auc = score(train_rows, test_rows)
            y = targets(test_rows)
            scores = binary_metrics(y, probability, 0.5)
            result = {"repeat": repeat, "fold": fold, "n_train": len(train_rows), "n_test": len(test_rows),
                      "test_groups": len({r["group"] for r in test_rows if r["group"]}),
                      "positive_share": round(float(y.mean()), 3),
                      **{m: scores[m] for m in METRICS}, "validation_auc": validation_auc,
                      "seconds": round(time.monotonic() - started)}
            with out.open("a", newline="") as f:
                csv.DictWriter(f, COLUMNS).writerow(result)
            print({m: scores[m] for m in METRICS}, flush=True)
    finished = done_folds(out)
    summary = {m: [float(r[m]) for r in finished if r.get(m) not in (None, "")] for m in (*METRICS, "validation_auc")}
    summary = {m: v for m, v in summary.items() if v}
    cells = [f"{m} {statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
             for m, v in summary.items()]
    print(f"{label}: {len(finished)} folds, {sum(int(r['seconds']) for r in finished)} s: {', '.join(cells)}")


if __name__ == "__main__":
    run_stage(main)  # a bad override or input is one line, not a traceback
