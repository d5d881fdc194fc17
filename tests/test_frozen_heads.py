"""benchmarks/frozen_heads.py on a tiny generated data set: every image scored once, by a head that never saw
its fold."""
import csv
import subprocess
import sys

import numpy as np
from PIL import Image

from helpers import ROOT, project_params
from valence.data.folds import FOLD_COLUMNS, assign_folds
from valence.files import write_csv
from valence.learn import heads
from valence.learn.train_on_features import choose_c


def tiny_labels(work, concepts=12, photos=3):
    """data/labels.csv and its images: ``concepts`` concepts of ``photos`` random 24×24 photos, alternating class."""
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


def frozen_heads(work, *args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/frozen_heads.py"), "--results-dir", str(work / "out"),
                           "--candidates", "lite2", "--cs", "0.001,0.01", *args], cwd=work, capture_output=True, text=True)


def test_each_image_is_scored_by_the_head_of_the_other_folds(tmp_path):
    rows = tiny_labels(tmp_path, concepts=15, photos=2)
    (tmp_path / "data/near_duplicates.csv").write_text("path,label,representative,distance\n")
    (tmp_path / "params.yaml").write_text(project_params({}))
    folded = assign_folds(rows, 5, 21)  # the project's split: test_size 0.2, seed 21
    write_csv(tmp_path / "data/split/folds.csv", folded, FOLD_COLUMNS)
    result = frozen_heads(tmp_path, "--other-split-seeds", "22")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lite2, split seed 21: 1280 features" in result.stdout and "over split seeds 21, 22" in result.stdout
    with open(tmp_path / "out/frozen-lite2.csv") as f:
        scored = list(csv.DictReader(f))
    assert [(r["path"], int(r["fold"])) for r in scored] == [(r["path"], r["fold"]) for r in folded]
    views = np.stack([np.load(next((tmp_path / "data/features-bench").glob(f"*-view{v}.npy"))) for v in (0, 1)])
    y = np.array([r["label"] == "Positive" for r in folded], dtype=int)
    folds = np.array([r["fold"] for r in folded])
    for k in range(5):  # the same C on the other folds' features gives the held-out fold's probabilities
        c = float(scored[int(np.flatnonzero(folds == k)[0])]["C"])
        expected = heads.score([heads.logistic(views[:, folds != k], y[folds != k], c, "p")], views[:, folds == k])["p"]
        np.testing.assert_allclose([float(r["probability"]) for r, held in zip(scored, folds == k) if held], expected,
                                   atol=2e-6)
    stale = [{**r, "fold": (r["fold"] + 1) % 5} for r in folded]
    write_csv(tmp_path / "data/split/folds.csv", stale, FOLD_COLUMNS)
    result = frozen_heads(tmp_path)
    assert result.returncode != 0 and "run dvc repro split" in result.stderr


def test_nested_comparison_scores_each_fold_by_the_pick_of_its_training_folds(tmp_path):
    """Each outer fold takes the candidate whose C has the best inner-CV ROC AUC on the other folds (computed here
    with scikit-learn's folds afresh), and its held-out probabilities are that candidate's, unchanged."""
    rows = tiny_labels(tmp_path, concepts=15, photos=2)
    (tmp_path / "data/near_duplicates.csv").write_text("path,label,representative,distance\n")
    (tmp_path / "params.yaml").write_text(project_params({}))
    folded = assign_folds(rows, 5, 21)
    write_csv(tmp_path / "data/split/folds.csv", folded, FOLD_COLUMNS)
    result = frozen_heads(tmp_path, "--candidates", "lite2,lite2_photo_only")  # the same features, views 2 and 1
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nested, split seed 21: each fold picks among 2 candidates × 2 C" in result.stdout
    read = lambda name: list(csv.DictReader(open(tmp_path / f"out/frozen-{name}.csv")))  # noqa: E731
    nested, by_candidate = read("nested"), {name: read(name) for name in ("lite2", "lite2_photo_only")}
    views = np.stack([np.load(next((tmp_path / "data/features-bench").glob(f"*-view{v}.npy"))) for v in (0, 1)])
    y = np.array([r["label"] == "Positive" for r in folded], dtype=int)
    folds, groups = np.array([r["fold"] for r in folded]), np.array([r["group"] for r in folded])
    for k in range(5):
        fit = folds != k
        inner = {name: max(choose_c(views[:n, fit], y[fit], groups[fit], [0.001, 0.01], folds=5, seed=21)[1]
                           .values()) for name, n in (("lite2", 2), ("lite2_photo_only", 1))}
        expected = max(inner, key=inner.get)
        held = [i for i, f in enumerate(folds) if f == k]
        assert {nested[i]["candidate"] for i in held} == {expected}
        assert [nested[i]["probability"] for i in held] == [by_candidate[expected][i]["probability"] for i in held]
