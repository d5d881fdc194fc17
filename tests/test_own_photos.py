"""README "Your own photos", followed end to end on generated photos: a folder of class folders put under DVC,
`dvc repro`, the metrics, `valence predict` on new photos, a changed photo re-running the pipeline; then a
folder with a labels CSV of ratings and groups, and a bad row in it."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import DVC, MOBILENET_WEIGHTS, make_default_project, make_project, require_shared, run
from valence.data.demo_faces import draw_face
from valence.data.labels import CLASSES

pytestmark = pytest.mark.slow  # the real DVC pipeline on a project of your own photos: minutes


def draw_photos(folder, names_and_labels, seed):
    """Smiling (Positive) or frowning (Negative) faces as JPEG files at the given names."""
    rng = np.random.default_rng(seed)
    for name, label in names_and_labels:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_face(rng, label == "Positive", 48, 60)).save(folder / name, quality=90)


def set_params(work, **sections):
    document = yaml.safe_load((work / "params.yaml").read_text())
    for section, values in sections.items():
        document[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def test_a_folder_of_your_photos_under_dvc_trains_a_model_and_a_changed_photo_reruns_it(tmp_path):
    """With the shipped recipe (train.model: frozen), as README's user runs it: small_cnn's 2 epochs score
    these photos at chance (out-of-fold ROC AUC 0.47 measured), so only this recipe can show it learnt."""
    require_shared(MOBILENET_WEIGHTS, check="your own photos through the default recipe")
    work = tmp_path / "project"
    env = make_default_project(work, {})
    draw_photos(work / "my photos", [(f"{label}/{label.lower()} {i}.jpg", label) for label in CLASSES
                                     for i in range(20)], seed=1)
    run(DVC + ["add", "my photos"], work, env)  # versioned and pushed like every other DVC file
    set_params(work, download={"source": "path", "path": "my photos"})
    output = run(DVC + ["repro"], work, env)
    for stage in ("download", "unzip", "split", "fold@4", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in output
    data = json.loads((work / "metrics/data.json").read_text())
    assert data["folder"] == {"path": "my photos", "images": 40} and data["Negative"] == data["Positive"] == 20
    assert not any((work / "data/raw").iterdir())  # nothing downloaded, nothing copied there
    # out of fold, measured (2 cores): ROC AUC 1.0, balanced accuracy 1.0; drawn with seed 5 too, seed 9: 0.92 and
    # 0.95; train.seed 7: 1.0 (at 12 a class the worst was 0.83). Heads fit to shuffled labels: 0.35 and 0.4
    metrics = json.loads((work / "dvclive/evaluate/metrics.json").read_text())["out_of_fold"]
    assert metrics["roc_auc"] >= 0.8 and metrics["balanced_accuracy"] >= 0.7, metrics
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "trained on my photos"], work, env)

    draw_photos(work / "new photos", [("a.jpg", "Positive"), ("b.jpg", "Negative")], seed=2)
    run([sys.executable, "-m", "valence", "predict", "new photos", "--out", "p.csv"], work, env)
    predicted = list(csv.DictReader((work / "p.csv").open()))
    assert [r["path"] for r in predicted] == ["new photos/a.jpg", "new photos/b.jpg"]
    assert all(0 <= float(r["probability"]) <= 1 for r in predicted)

    draw_photos(work / "my photos", [("Positive/positive 0.jpg", "Positive")], seed=3)  # one photo changes
    assert "my photos" in run(DVC + ["status"], work, env)
    run(DVC + ["add", "my photos"], work, env)
    output = run(DVC + ["repro"], work, env)
    assert "Running stage 'unzip'" in output and "Running stage 'download'" not in output


def test_a_labels_csv_of_ratings_and_groups_trains_and_a_bad_row_is_one_line(tmp_path):
    work = tmp_path / "project"
    env = make_project(work, {}, {})
    rng = np.random.default_rng(4)
    rows = []
    for i in range(30):  # 15 subjects, two photos each, rated 0–10; 5 is neutral
        label = CLASSES[i % 2]
        rating = rng.uniform(6, 10) if label == "Positive" else rng.uniform(0, 4)
        rows.append({"path": f"shots/{i:02d}.jpg", "rating": f"{rating:.1f}", "group": f"subject {i // 2}",
                     "camera": "phone"})
        draw_photos(work / "rated", [(rows[-1]["path"], label)], seed=i)
    with open(work / "rated/labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    set_params(work, download={"source": "path", "path": "rated"},
               unzip={"rating_column": "rating", "valence_threshold": 5.0})
    output = run(DVC + ["repro"], work, env)
    assert "Running stage 'evaluate'" in output
    data = json.loads((work / "metrics/data.json").read_text())
    assert data["images"] == 30 and data["groups"] == 15 and data["Positive"] == data["Negative"] == 15
    split = json.loads((work / "metrics/split.json").read_text())
    assert split["groups_in_several_folds"] == 0
    fold_of = {r["path"]: r["fold"] for r in csv.DictReader((work / "data/split/folds.csv").open())}
    by_subject = {}
    for r in rows:  # the audit may join near-copies into larger groups; a subject is never split
        by_subject.setdefault(r["group"], set()).add(fold_of[f"data/images/{r['path']}"])
    assert len(by_subject) == 15 and all(len(f) == 1 for f in by_subject.values())

    text = (work / "rated/labels.csv").read_text().replace(f",{rows[6]['rating']},", ",high,", 1)
    (work / "rated/labels.csv").write_text(text)
    result = subprocess.run(DVC + ["repro"], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "error: rated/labels.csv, row 8: rating 'high' is not a number" in result.stderr + result.stdout


def test_a_labels_csv_with_valence_and_arousal_learns_both_and_predict_gives_them(tmp_path):
    """The shipped recipe on a labels CSV with a rating column (valence: smiling faces high) and an arousal column
    (brighter photos more intense): both rating heads are learnt out of fold and released; predict writes both
    columns; a non-numeric arousal stops unzip with one line naming the row."""
    require_shared(MOBILENET_WEIGHTS, check="rating heads end to end")
    work = tmp_path / "project"
    env = make_default_project(work, {})
    rng, rows = np.random.default_rng(6), []
    for i in range(40):
        smiling, arousal = i % 2 == 0, rng.uniform(1, 7)
        valence = rng.uniform(5, 7) if smiling else rng.uniform(1, 3)
        face = draw_face(rng, smiling, 48, 60).astype(float) * (0.35 + 0.1 * arousal)
        (work / "rated").mkdir(exist_ok=True)
        Image.fromarray(np.clip(face, 0, 255).astype(np.uint8)).save(work / f"rated/{i:02d}.jpg", quality=90)
        rows.append({"path": f"{i:02d}.jpg", "rating": f"{valence:.2f}", "intensity": f"{arousal:.2f}"})
    with open(work / "rated/labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    set_params(work, download={"source": "path", "path": "rated"},
               unzip={"rating_column": "rating", "arousal_column": "intensity"})
    run(DVC + ["repro"], work, env)
    metrics = json.loads((work / "dvclive/evaluate/metrics.json").read_text())
    ratings = metrics["ratings"]
    assert sorted(metrics["roc_auc_by_score"]) == ["classifier", "valence_head"]  # P(Positive) combines the two
    # out of fold, measured on a 2-core AMD EPYC (AVX-512): valence r 0.826 (MAE 1.06), arousal r 0.508 (MAE 1.09);
    # chance is r = 0, so the margins below leave room for other CPUs' float differences in the features
    assert ratings["valence"]["pearson_r"] >= 0.6 and ratings["arousal"]["pearson_r"] >= 0.3, ratings
    assert ratings["valence"]["images"] == ratings["arousal"]["images"] == 40
    export = json.loads((work / "metrics/export.json").read_text())
    assert {"max_abs_difference_valence", "max_abs_difference_arousal"} <= export.keys()
    for model in ("models/model.keras", "models/model.tflite"):
        run([sys.executable, "-m", "valence", "predict", "rated", "--model", model, "--out", "p.csv",
             "--force"], work, env)
        predicted = list(csv.DictReader((work / "p.csv").open()))
        assert list(predicted[0]) == ["path", "probability", "label", "valence", "arousal", "photo_score", "photo",
                                     "model_md5", "model_source"]
        rated = {f"rated/{r['path']}": r for r in rows}
        fitted = [(float(p["arousal"]), float(rated[p["path"]]["intensity"])) for p in predicted]
        assert np.corrcoef(*zip(*fitted))[0, 1] > 0.8  # the release, on the photos it learnt from
        assert all(1 <= float(p["valence"]) <= 7 for p in predicted)  # the rated range widened: 1–7

    text = (work / "rated/labels.csv").read_text().replace(f",{rows[4]['intensity']}\n", ",loud\n", 1)
    (work / "rated/labels.csv").write_text(text)
    result = subprocess.run(DVC + ["repro"], cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "error: rated/labels.csv, row 6: intensity 'loud' is not a number" in result.stderr + result.stdout
