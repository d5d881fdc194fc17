"""End to end: the real `dvc repro` on a tiny demo dataset in a copy of the project."""
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from browser import Chromium, chromium_binary
from helpers import DVC, ROOT, make_project, run


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC copy of the project set to the demo source at tiny sizes, after one `dvc repro`."""
    work = tmp_path_factory.mktemp("project")
    env = make_project(work, dict(source="demo", demo_images_per_class=20, demo_height=48, demo_width=60), {})
    first = run(DVC + ["repro"], work, env)
    return work, env, DVC, first


def test_repro_runs_every_stage_and_writes_metrics_and_plots(project):
    work, _, _, output = project
    for stage in ("download", "unzip", "audit", "split", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in output
    data = json.loads((work / "metrics/data.json").read_text())
    assert data["Negative"] == data["Positive"] == 20 and data["skipped"] == 0
    split = json.loads((work / "metrics/split.json").read_text())
    assert split["test"]["total"] == 8 and split["train"]["total"] == 32
    assert split["group_by"] == "concept" and split["groups_in_both_splits"] == 0
    assert split["near_duplicate_pairs_across_splits"] == 0
    audit = json.loads((work / "metrics/audit.json").read_text())
    assert audit["images"] == 40 and audit["tiny"] == 40  # 48×60 demo faces are under audit.min_side
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
    for png in ("train/learning_curves", "eval/roc", "eval/precision_recall", "eval/confusion_matrix", "eval/mistakes",
                "audit/near_duplicates"):
        with Image.open(work / f"plots/{png}.png") as image:
            assert image.format == "PNG" and image.getextrema() != ((255, 255),) * len(image.getbands())
    assert (work / "models/model.keras").stat().st_size > 0


def test_second_repro_has_nothing_to_do(project):
    work, env, dvc, _ = project
    output = run(dvc + ["repro"], work, env)
    assert "Running stage" not in output
    assert "up to date" in output


def test_predict_reproduces_evaluate_and_the_export_matches_keras(project):
    """`python -m valence predict` on a folder of the test split's images gives evaluate's probabilities."""
    work, env, _, _ = project
    export = json.loads((work / "metrics/export.json").read_text())
    assert export["n_test"] == 8 and export["max_abs_difference"] <= 1e-4 and export["litert_mb"] > 0
    folder = work / "new photos"
    folder.mkdir()
    evaluated = {}
    for row in csv.DictReader((work / "plots/eval/predictions.csv").open()):
        (folder / Path(row["path"]).name).symlink_to(work / row["path"])
        evaluated[Path(row["path"]).name] = float(row["probability"])
    for model, tolerance in (("models/model.keras", 1e-5), ("models/model.tflite", 1e-4)):
        run([sys.executable, "-m", "valence", "predict", "new photos", "--model", model, "--out", "p.csv"], work, env)
        predicted = {Path(r["path"]).name: float(r["probability"]) for r in csv.DictReader((work / "p.csv").open())}
        assert predicted.keys() == evaluated.keys()
        assert max(abs(predicted[k] - evaluated[k]) for k in evaluated) <= tolerance, model


def vega_plots():
    """{title: (x label, y label)} of the data-series plots dvc.yaml declares (the others are PNG files)."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    return {p["title"]: (p["x_label"], p["y_label"]) for entry in plots if isinstance(entry, dict)
            for p in entry.values()}


@pytest.fixture(scope="module")
def chromium():
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("VALENCE_REQUIRE_CHROMIUM"):  # .ci/run sets it: CI must not skip the browser check
            pytest.fail("Chromium is required (VALENCE_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("Chromium is not installed (apt install chromium; .ci/run does)")
    return binary


# Per Vega view: its title and axis labels as drawn, and how many marks (lines, points, cells) it drew.
VIEWS = """[...document.querySelectorAll('.vega-embed')].map(view => ({
    text: [...view.querySelectorAll('svg text')].map(t => t.textContent),
    marks: view.querySelectorAll('svg .mark-line path, svg .mark-symbol path, svg .mark-rect path').length}))"""


def test_plots_show_draws_every_plot_offline_in_chromium(project, chromium):
    work, env, dvc, _ = project
    run(dvc + ["plots", "show", "-o", "plots_html"], work, env)
    expected = vega_plots()
    with Chromium(chromium) as browser:
        browser.open((work / "plots_html/index.html").as_uri())
        browser.wait_for(f"document.querySelectorAll('.vega-embed svg.marks').length >= {len(expected)}")
        browser.wait_for("[...document.images].every(i => i.complete)")
        views = browser.evaluate(VIEWS)
        images = browser.evaluate("[...document.images].map(i => [i.src.split('/').pop(), i.naturalWidth])")
        requests = browser.requests()
        screenshot = browser.screenshot(ROOT / "test-artifacts/plots_show.png")
    assert len(views) == len(expected)
    for title, (x_label, y_label) in expected.items():
        view = next((v for v in views if title in v["text"]), None)
        assert view is not None, f"{title!r} not drawn"
        assert x_label in view["text"] and y_label in view["text"], title
        assert view["marks"] > 0, f"{title!r} drew no marks"
    image_plots = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(p, str)]
    assert len(images) == len(image_plots) == 6 and all(width > 0 for _, width in images), images
    assert requests and all(url.startswith("file://") for url in requests), requests  # no network at all
    assert screenshot.stat().st_size > 10_000


def test_dvc_default_page_would_need_the_network(project, chromium):
    """The check above can fail: DVC's own page asks a CDN for Vega (blank offline)."""
    work, env, dvc, _ = project
    from dvc_render.html import PAGE_HTML
    (work / "default_page.html").write_text(PAGE_HTML)
    run(dvc + ["plots", "show", "-o", "plots_cdn", "--html-template", str(work / "default_page.html")], work, env)
    with Chromium(chromium) as browser:
        browser.open((work / "plots_cdn/index.html").as_uri())
        browser.wait_for("document.readyState === 'complete'")
        requests = browser.requests()
    assert any(url.startswith("https://cdn.jsdelivr.net/npm/vega") for url in requests), requests


def test_changing_a_train_param_reruns_only_train_and_evaluate(project):
    work, env, dvc, _ = project
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "after repro"], work, env)
    output = run(dvc + ["exp", "run", "-S", "train.small_cnn.epochs=1"], work, env)
    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output
    for stage in ("download", "unzip", "audit", "split"):
        assert f"Running stage '{stage}'" not in output


def test_plots_diff_shows_two_revisions(project, chromium):
    """After the commit above (the experiment is not applied), HEAD and the workspace are drawn side by side."""
    work, env, dvc, _ = project
    run(dvc + ["plots", "diff", "HEAD", "-o", "plots_diff"], work, env)
    with Chromium(chromium) as browser:
        browser.open((work / "plots_diff/index.html").as_uri())
        browser.wait_for(f"document.querySelectorAll('.vega-embed svg.marks').length >= {len(vega_plots())}")
        views = browser.evaluate(VIEWS)
    loss_title = next(title for title in vega_plots() if title.startswith("Loss per epoch"))
    loss = next(v for v in views if loss_title in v["text"])
    assert "HEAD" in loss["text"] and "workspace" in loss["text"]


def test_artifacts_get_fetches_a_registered_version(project, tmp_path):
    """dvc.yaml's artifacts: a version is a Git tag `<name>@v<semver>` (DVC's model registry convention), and
    `dvc artifacts get` gives that revision's model file (here from the project's own cache; normally a remote)."""
    work, env, dvc, _ = project
    run(["git", "tag", "-a", "valence-classifier@v0.1.0", "-m", "first version", "HEAD"], work, env)
    run(dvc + ["artifacts", "get", str(work), "valence-classifier", "--rev", "v0.1.0", "-o", str(tmp_path / "m.keras")],
        tmp_path, env)
    lock = yaml.safe_load(run(["git", "show", "valence-classifier@v0.1.0:dvc.lock"], work, env))
    committed = next(o for o in lock["stages"]["train"]["outs"] if o["path"] == "models/model.keras")
    assert hashlib.md5((tmp_path / "m.keras").read_bytes()).hexdigest() == committed["md5"]
