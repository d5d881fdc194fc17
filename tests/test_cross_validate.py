"""benchmarks/cross_validate.py on a tiny generated data set: grouped folds, resumable results, overrides."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, project_params


def tiny_labels(work, concepts=12, photos=3):
    (work / "data/images").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for c in range(concepts):
        label = "Positive" if c % 2 else "Negative"
        for i in range(photos):
            path = f"data/images/c{c}_{i}.png"
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(work / path)
            rows.append({"path": path, "label": label, "group": f"concept {c}"})
    with open(work / "data/labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def cross_validate(work, *args):
    """The benchmark run in ``work``, a project folder: its labels and the project's params.yaml."""
    (work / "params.yaml").write_text(project_params({}))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/cross_validate.py"), "--results-dir", str(work / "out"),
                           *args], cwd=work, capture_output=True, text=True)


def test_folds_hold_out_whole_concepts_and_a_rerun_resumes(tmp_path):
    rows = tiny_labels(tmp_path)
    # a near-copy pair across two concepts joins them into one group
    (tmp_path / "data/audit.json").write_text(json.dumps({"near_duplicates": [{"paths": [rows[0]["path"], rows[3]["path"]]}]}))
    args = ["--model", "small_cnn", "--folds", "2", "-S", "small_cnn.epochs=1", "-S", "small_cnn.image_height=32",
            "-S", "small_cnn.image_width=32", "-S", "validation_size=0.5"]
    result = cross_validate(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out/small_cnn-grouped.csv") as f:
        folds = list(csv.DictReader(f))
    assert [int(r["fold"]) for r in folds] == [0, 1]
    assert sum(int(r["n_test"]) for r in folds) == len(rows)
    assert sum(int(r["test_groups"]) for r in folds) == 11  # 12 concepts, two joined by the near-copy
    for r in folds:
        assert 0 <= float(r["roc_auc"]) <= 1 and 0 <= float(r["validation_auc"]) <= 1
    assert "small_cnn-grouped: 2 folds" in result.stdout
    again = cross_validate(tmp_path, *args)
    assert again.returncode == 0 and "fold 1/2" not in again.stdout  # done folds are skipped
    assert (tmp_path / "out/small_cnn-grouped.csv").read_text().count("\n") == 3
    # variants of the same trained folds: the folds train again for the new file, the plain file keeps its rows
    variants = cross_validate(tmp_path, *args, "--flip-average")
    assert variants.returncode == 0, variants.stderr
    assert (tmp_path / "out/small_cnn-grouped.csv").read_text().count("\n") == 3
    with open(tmp_path / "out/small_cnn-grouped-flip.csv") as f:
        flipped = list(csv.DictReader(f))
    assert [int(r["fold"]) for r in flipped] == [0, 1]
    assert "small_cnn-grouped-flip: 2 folds" in variants.stdout


@pytest.mark.parametrize("args, message", [
    (["-S", "small_cnn.epoch=1"], "unknown key(s) train.small_cnn.epoch"),
    (["--probe", "--flip-average"], "not with --probe"),  # variants of a trained model, not of the probe
    (["-S", "model=frozen"], "benchmarks/frozen_heads.py"),  # heads on frozen features have their own benchmark
])
def test_bad_arguments_are_refused(tmp_path, args, message):
    tiny_labels(tmp_path)
    result = cross_validate(tmp_path, *args)
    assert result.returncode != 0 and message in result.stderr


def test_probe_mix_scores_the_probe_fitted_on_the_same_rows(tmp_path):
    tiny_labels(tmp_path)
    args = ["--model", "small_cnn", "--folds", "2", "-S", "small_cnn.epochs=1", "-S", "small_cnn.image_height=32",
            "-S", "small_cnn.image_width=32", "-S", "validation_size=0.5", "--probe-mix"]
    result = cross_validate(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out/small_cnn-grouped.csv") as f:
        plain = list(csv.DictReader(f))
    with open(tmp_path / "out/small_cnn-grouped-probe-mix.csv") as f:
        mixed = list(csv.DictReader(f))
    assert not (tmp_path / "out/small_cnn-grouped-flip.csv").exists()  # not asked for
    assert [int(r["fold"]) for r in mixed] == [0, 1]
    # the probe's half moves every score: the mix ranks the held-out photos differently from the model alone
    assert [r["average_precision"] for r in mixed] != [r["average_precision"] for r in plain]
    assert all(0 <= float(r["validation_auc"]) <= 1 for r in mixed)


def test_a_lite2_probe_writes_its_own_file(tmp_path):
    tiny_labels(tmp_path)
    result = cross_validate(tmp_path, "--probe", "--probe-backbone", "efficientnet_lite2", "--probe-c", "0.03",
                            "--folds", "2")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out/probe-efficientnet_lite2-c0.03-grouped.csv") as f:
        folds = list(csv.DictReader(f))
    assert [int(r["fold"]) for r in folds] == [0, 1] and all(0 <= float(r["roc_auc"]) <= 1 for r in folds)
    assert not (tmp_path / "out/probe-grouped.csv").exists()  # the MobileNetV2 reference keeps its own file
