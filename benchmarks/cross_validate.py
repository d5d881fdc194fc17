"""k-fold cross-validation of a model on the whole labelled set, folds grouped by concept: an honest estimate.

    python benchmarks/cross_validate.py                                  # mobilenet_v2, 5 grouped folds
    python benchmarks/cross_validate.py --model small_cnn
    python benchmarks/cross_validate.py --group-by none                  # random folds, to show the gap
    python benchmarks/cross_validate.py --probe --repeats 3              # the frozen-feature reference
    python benchmarks/cross_validate.py --probe --probe-backbone efficientnet_lite2 --probe-c 0.03 --repeats 3
    python benchmarks/cross_validate.py -S mobilenet_v2.fine_tune_blocks=5 --label more-blocks

Needs data/labels.csv (`dvc repro unzip`; data/audit.json from `dvc repro audit` joins near-copies into
groups too) and, offline, KERAS_HOME as in the README. Each fold trains with the package's own
`valence.training.train` and params.yaml's train section (-S overrides keys under train), early stopping on a
grouped validation slice of the training folds, and is scored once on its held-out fold. Folds come from
split.seed (+1, +2 for more repeats): StratifiedGroupKFold, so no concept is on both sides.

--probe is the reference the fine-tune must beat: frozen ImageNet MobileNetV2 at 224×224, global-average
features averaged over the image and its mirror, and a logistic regression (C 0.1, balanced classes).
--probe-backbone efficientnet_lite2 takes EfficientNet-Lite2's at 260×260 instead, --probe-c another C.

Variants of the same trained fold cost no training: --flip-average also writes <label>-flip.csv (P(Positive)
averaged over each image and its mirror, as evaluate.flip_average does) and --probe-mix <label>-probe-mix.csv
(the mean of that and the probe's P(Positive), the probe fitted on the same rows). Choose between them by
validation_auc, never by the held-out columns.

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
# validation_auc: the trained model's ROC AUC on its validation slice of the training folds (with early stopping,
# the best epoch restored): what variants are chosen by, never the held-out fold
COLUMNS = ["repeat", "fold", "n_train", "n_test", "test_groups", "positive_share", *METRICS, "validation_auc",
           "seconds"]


def train_params(overrides):
    """params.yaml's train section with ``key=value`` overrides (keys below train, values as YAML)."""
    section = params.read().get("train") or {}
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


PROBE_SIZES = {"mobilenet_v2": 224, "efficientnet_lite2": 260}  # each backbone's native square input


def probe_backbone(name):
    """Frozen ImageNet ``name`` at its native square size, globally average-pooled: 0–255 images → features."""
    import keras

    size = PROBE_SIZES[name]
    if name == "mobilenet_v2":
        backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                                  weights="imagenet", pooling="avg")
        return size, lambda x: backbone.predict(x / 127.5 - 1, batch_size=64, verbose=0)
    from valence import efficientnet_lite

    convs = efficientnet_lite.backbone(name, (size, size, 3))
    efficientnet_lite.load_imagenet_weights(convs, name)
    pooled = keras.Sequential([convs, keras.layers.GlobalAveragePooling2D()])
    return size, lambda x: pooled.predict((x - 127) / 128, batch_size=64, verbose=0)


def probe_features(name="mobilenet_v2"):
    """rows → frozen ImageNet features of backbone ``name`` (mean over the image and its mirror), once per image."""
    import numpy as np

    from valence import compute
    from valence.images import load_images

    compute.configure(0)
    size, predict = probe_backbone(name)
    cache = {}

    def features(rows):
        missing = [r["path"] for r in rows if r["path"] not in cache]
        if missing:
            images = load_images(missing, size, size, desc="probe").astype("float32")
            both = [predict(x) for x in (images, images[:, :, ::-1])]
            cache.update(zip(missing, (both[0] + both[1]) / 2))
        return np.stack([cache[r["path"]] for r in rows])

    return features


def fit_probe(features, fit_rows, c=0.1):
    """The reference logistic regression (C ``c``, balanced classes) on ``fit_rows``: rows → P(Positive)."""
    from sklearn.linear_model import LogisticRegression

    from valence.labels import targets

    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(features(fit_rows),
                                                                                targets(fit_rows))
    return lambda rows: model.predict_proba(features(rows))[:, 1]


def probe_scorer(backbone, c):
    """(train rows, test rows) → {"": (P(Positive) of the test rows, validation AUC: none)}."""
    features = probe_features(backbone)
    return lambda train_rows, test_rows: {"": (fit_probe(features, train_rows, c)(test_rows), None)}


def model_scorer(p, flip_average=False, probe_mix=False):
    """(train rows, test rows) → {file suffix: (P(Positive) of the test rows, validation AUC)}, one training."""
    features = probe_features() if probe_mix else None

    def score(train_rows, test_rows):
        import keras
        from sklearn.metrics import roc_auc_score

        from valence import training
        from valence.classifier import KerasClassifier
        from valence.images import load_images
        from valence.labels import targets
        from valence.predict import score_batches

        keras.backend.clear_session()
        model = KerasClassifier(training.train(p, train_rows)[0])
        fit_rows, val_rows = training.carve_validation(train_rows, p.validation_size, p.seed)  # as train drew

        def predict(rows, flip, desc):
            images = load_images([r["path"] for r in rows], model.height, model.width, desc=desc)
            return score_batches(model, images, 64, flip, f"scoring {desc}")  # as evaluate scores

        def auc(probability):
            return round(float(roc_auc_score(targets(val_rows), probability)), 4) if val_rows else None

        def both(flip):
            return {"test": predict(test_rows, flip, "held-out fold"),
                    "val": predict(val_rows, flip, "validation slice") if val_rows else []}

        variants = {"": both(False)}
        if flip_average or probe_mix:
            flipped = both(True)
            if flip_average:
                variants["-flip"] = flipped
            if probe_mix:
                probe = fit_probe(features, fit_rows)
                variants["-probe-mix"] = {"test": (flipped["test"] + probe(test_rows)) / 2,
                                          "val": (flipped["val"] + probe(val_rows)) / 2 if val_rows else []}
        return {suffix: (v["test"], auc(v["val"])) for suffix, v in variants.items()}

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
    parser.add_argument("--probe-backbone", choices=sorted(PROBE_SIZES), default="mobilenet_v2",
                        help="the probe's frozen features")
    parser.add_argument("--probe-c", type=float, default=0.1, help="the probe's inverse L2 strength")
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a train param, e.g. -S mobilenet_v2.epochs=10")
    parser.add_argument("--flip-average", action="store_true", help="also score with flip averaging (<label>-flip)")
    parser.add_argument("--probe-mix", action="store_true",
                        help="also score the mean of the flip-averaged model and the probe (<label>-probe-mix)")
    parser.add_argument("--label", help="results file name (default from the model and grouping)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    p = train_params(args.overrides + ([f"model={args.model}"] if args.model else []))
    if p.model == params.FROZEN_MODEL and not args.probe:
        sys.exit("train.model frozen: heads on frozen features are cross-validated by benchmarks/frozen_heads.py; "
                 "here pass --model for a model that trains on images")
    seed = params.load("split").seed
    name = p.model
    if args.probe:
        name = "probe" if args.probe_backbone == "mobilenet_v2" else f"probe-{args.probe_backbone}"
        name += "" if args.probe_c == 0.1 else f"-c{args.probe_c:g}"
    label = args.label or f"{name}-{'grouped' if args.group_by == 'concept' else 'random'}"
    suffixes = [""] + ["-flip"] * args.flip_average + ["-probe-mix"] * args.probe_mix
    if args.probe and len(suffixes) > 1:
        sys.exit("--flip-average and --probe-mix score a trained model: not with --probe")
    outs = {suffix: args.results_dir / f"{label}{suffix}.csv" for suffix in suffixes}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    rows = labelled_rows(args.group_by)
    for out in outs.values():
        if out.exists() and out.read_text().split("\n", 1)[0] != ",".join(COLUMNS):
            sys.exit(f"{out}: written by another version of this script (other columns); move it away to start anew")
    done = {suffix: {(int(r["repeat"]), int(r["fold"])) for r in done_folds(out)} for suffix, out in outs.items()}
    for out in outs.values():
        if not out.exists():
            with out.open("w", newline="") as f:
                csv.DictWriter(f, COLUMNS).writeheader()
    score = probe_scorer(args.probe_backbone, args.probe_c) if args.probe else model_scorer(p, args.flip_average,
                                                                                           args.probe_mix)
    from valence.labels import targets
    from valence.evaluation import binary_metrics

    for repeat in range(args.repeats):
        folds = grouped_folds(rows, args.folds, seed + repeat, what="data/labels.csv")
        for fold, (train_rows, test_rows) in enumerate(folds):
            if all((repeat, fold) in folds_done for folds_done in done.values()):
                continue  # a fold is trained again unless every file asked for has it
            started = time.monotonic()
            print(f"{label}: repeat {repeat}, fold {fold + 1}/{args.folds}: {len(train_rows)} train, "
                  f"{len(test_rows)} held out", flush=True)
            y = targets(test_rows)
            for suffix, (probability, validation_auc) in score(train_rows, test_rows).items():
                if (repeat, fold) in done[suffix]:
                    continue
                scores = binary_metrics(y, probability, 0.5)
                result = {"repeat": repeat, "fold": fold, "n_train": len(train_rows), "n_test": len(test_rows),
                          "test_groups": len({r["group"] for r in test_rows if r["group"]}),
                          "positive_share": round(float(y.mean()), 3),
                          **{m: scores[m] for m in METRICS}, "validation_auc": validation_auc,
                          "seconds": round(time.monotonic() - started)}
                with outs[suffix].open("a", newline="") as f:
                    csv.DictWriter(f, COLUMNS).writerow(result)
                print(f"{label}{suffix}:", {m: scores[m] for m in METRICS}, "validation AUC", validation_auc,
                      flush=True)
    for suffix, out in outs.items():
        summarise(f"{label}{suffix}", done_folds(out))


def summarise(label, finished):
    """Print mean ± std over the finished folds of one results file."""
    summary = {m: [float(r[m]) for r in finished if r.get(m) not in (None, "")] for m in (*METRICS, "validation_auc")}
    summary = {m: v for m, v in summary.items() if v}
    cells = [f"{m} {statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
             for m, v in summary.items()]
    print(f"{label}: {len(finished)} folds, {sum(int(r['seconds']) for r in finished)} s: {', '.join(cells)}")


if __name__ == "__main__":
    run_stage(main)  # a bad override or input is one line, not a traceback
