"""End to end: the real `dvc repro` on a tiny demo dataset in a copy of the project."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ["stages", "valence", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config"]


def run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC copy of the project set to the demo source at tiny sizes, after one `dvc repro`."""
    work = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        source, target = ROOT / name, work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    document = yaml.safe_load((work / "params.yaml").read_text())
    document["download"].update(source="demo", demo_images_per_class=20, demo_height=48, demo_width=60)
    # small_cnn: the default mobilenet_v2 needs ImageNet weights, which tests/test_models.py covers
    document["train"].update(model="small_cnn", batch_size=8)
    document["train"]["small_cnn"].update(image_height=64, image_width=80, epochs=2)
    (work / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               KERAS_HOME=str(work / "empty-keras-home"), GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="t@t")
    dvc = [sys.executable, "-m", "dvc"]
    run(["git", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "project"], work, env)
    first = run(dvc + ["repro"], work, env)
    return work, env, dvc, first


def test_repro_runs_every_stage_and_writes_metrics_and_plots(project):
    work, _, _, output = project
    for stage in ("download", "unzip", "split", "train", "evaluate"):
        assert f"Running stage '{stage}'" in output
    data = json.loads((work / "metrics/data.json").read_text())
    assert data["Negative"] == data["Positive"] == 20 and data["skipped"] == 0
    split = json.loads((work / "metrics/split.json").read_text())
    assert split["test"]["total"] == 8 and split["train"]["total"] == 32
    metrics = json.loads((work / "metrics/metrics.json").read_text())
    assert metrics["n_test"] == 8 and metrics["train"]["n_train"] == 32
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "average_precision", "majority_accuracy"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["Negative"]["support"] + metrics["Positive"]["support"] == 8
    assert len((work / "plots/eval/predictions.csv").read_text().splitlines()) == 9
    for split, n in (("test", 8), ("train", 32)):
        roc = (work / f"plots/eval/roc_{split}.csv").read_text().splitlines()
        assert roc[0] == "fpr,tpr,threshold" and roc[1].startswith("0.0,0.0,") and roc[-1].startswith("1.0,1.0,")
    history = (work / "plots/train/history.csv").read_text().splitlines()
    assert history[0] == "epoch,phase,loss,accuracy,auc,val_loss,val_accuracy,val_auc" and len(history) == 3
    assert history[1].startswith("1,train,")
    for png in ("train/learning_curves", "eval/roc", "eval/precision_recall", "eval/confusion_matrix"):
        with Image.open(work / f"plots/{png}.png") as image:
            assert image.format == "PNG" and image.getextrema() != ((255, 255),) * len(image.getbands())
    assert (work / "models/model.keras").stat().st_size > 0


def test_second_repro_has_nothing_to_do(project):
    work, env, dvc, _ = project
    output = run(dvc + ["repro"], work, env)
    assert "Running stage" not in output
    assert "up to date" in output


def test_plots_show_renders_every_declared_plot(project):
    work, env, dvc, _ = project
    run(dvc + ["plots", "show", "-o", "plots_html"], work, env)
    page = (work / "plots_html/index.html").read_text()
    for title in ("Loss per epoch", "ROC AUC per epoch", "ROC curve, test and train", "Confusion matrix",
                  "Precision-recall"):
        assert title in page
    assert "learning_curves.png" in page


def test_changing_a_train_param_reruns_only_train_and_evaluate(project):
    work, env, dvc, _ = project
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "after repro"], work, env)
    output = run(dvc + ["exp", "run", "-S", "train.small_cnn.epochs=1"], work, env)
    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output
    for stage in ("download", "unzip", "split"):
        assert f"Running stage '{stage}'" not in output
