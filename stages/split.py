"""Stage 3: stratified train/test manifests.

    python stages/split.py

Reads data/labels.csv; writes data/split/train.csv and data/split/test.csv (path, label; sorted by path, so
the same params give byte-identical files) and metrics/split.json (images per class per split).
"""
import _path  # noqa: F401
from valence import params
from valence.datasets import CLASSES
from valence.errors import run_stage
from valence.files import read_csv, write_csv, write_json
from valence.splitting import MANIFEST_COLUMNS, class_counts, stratified_split


def main():
    p = params.load("split")
    rows = read_csv("data/labels.csv", required=MANIFEST_COLUMNS)
    train, test = stratified_split(rows, p.test_size, p.seed, what="data/labels.csv")
    write_csv("data/split/train.csv", train, MANIFEST_COLUMNS)
    write_csv("data/split/test.csv", test, MANIFEST_COLUMNS)
    counts = {name: {**class_counts(part, CLASSES), "total": len(part)} for name, part in (("train", train), ("test", test))}
    write_json("metrics/split.json", counts)
    print(counts)


if __name__ == "__main__":
    run_stage(main)
