"""End to end: the real `dvc repro` on a tiny demo dataset in a copy of the project."""
import json

import pytest
from PIL import Image

from helpers import DVC, make_project, run


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC copy of the project set to the demo source at tiny sizes, after one `dvc repro`."""
    work = tmp_path_factory.mktemp("project")
    env = make_project(work, dict(source="demo", demo_images_per_class=20, demo_height=48, demo_width=60), {})
    first = run(DVC + ["repro"], work, env)
    return work, env, DVC, first


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
