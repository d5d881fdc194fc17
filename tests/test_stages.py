"""Stage scripts as a user runs them: bad input ends in one clear line, exit 1, and no half-written output."""
import ast

import pytest
import yaml

from helpers import ROOT, assert_one_line_error, run_stage


def test_download_without_network_or_local_copy(tmp_path):
    result = run_stage("download", tmp_path, "download:\n  url: http://127.0.0.1:9/archive.zip\n")
    assert_one_line_error(result, "cannot download http://127.0.0.1:9/archive.zip")
    assert "empty-keras-home/datasets/shiny-server" in result.stderr and "download.source=demo" in result.stderr
    assert not any((tmp_path / "data/raw").iterdir())


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_stage("split", tmp_path, "", VALENCE_DEBUG="1")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_a_stage_run_by_hand_keeps_earlier_outputs_on_failure(tmp_path):
    """`python -m stages.unzip` failing leaves the last outputs alone (under `dvc repro`, DVC removes them
    first: tests/test_recovery.py)."""
    params_text = "download:\n  source: demo\n  demo_images_per_class: 3\n  demo_height: 20\n  demo_width: 20\n"
    assert run_stage("download", tmp_path, params_text).returncode == 0
    assert run_stage("unzip", tmp_path, params_text).returncode == 0
    labels = (tmp_path / "data/labels.csv").read_bytes()
    result = run_stage("unzip", tmp_path, params_text + "unzip:\n  layout: rated_csv\n")
    assert_one_line_error(result, "data/raw/demo.zip: expected one rated CSV")
    assert (tmp_path / "data/labels.csv").read_bytes() == labels
    assert len(list((tmp_path / "data/images").rglob("*.jpg"))) == 6
    assert not list((tmp_path / "data").glob(".*tmp"))


def out_of_fold_project(tmp_path, predictions):
    """data/split/folds.csv of four images in two folds, and the fold stages' files as ``predictions`` says:
    {fold: [(path, probability)]}, the classifier's own probability the same (no valence head to combine)."""
    folds = {"a.jpg": 0, "b.jpg": 0, "c.jpg": 1, "d.jpg": 1}
    label = {"a.jpg": "Negative", "b.jpg": "Positive", "c.jpg": "Negative", "d.jpg": "Positive"}
    (tmp_path / "data/split").mkdir(parents=True)
    (tmp_path / "data/split/folds.csv").write_text("path,label,group,fold\n" + "".join(
        f"{path},{label[path]},,{fold}\n" for path, fold in folds.items()))
    for fold, scored in predictions.items():
        (tmp_path / f"data/oof/fold{fold}").mkdir(parents=True)
        (tmp_path / f"data/oof/fold{fold}/predictions.csv").write_text(
            "path,label,group,fold,probability,classifier_probability\n" + "".join(
                f"{path},{label.get(path, 'Positive')},,{folds.get(path, fold)},{q},{q}\n" for path, q in scored))
    return tmp_path


def test_evaluate_scores_calibrated_probabilities_cross_fitted_over_the_folds(tmp_path):
    """Probabilities shifted low, as balanced class weights make them: evaluate maps each fold by the beta map
    of the other folds' predictions; the threshold and calibration scores use those, ROC AUC the ranking."""
    import json

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from valence.learn import calibration

    rng = np.random.default_rng(0)
    truth = 1 / (1 + np.exp(-rng.normal(0.7, 1.5, 400)))
    y = (rng.random(400) < truth).astype(int)
    low, folds = calibration.apply((1.0, 1.0, -0.8), truth), np.arange(400) % 5
    names = [f"{i:03d}.jpg" for i in range(400)]
    (tmp_path / "data/split").mkdir(parents=True)
    (tmp_path / "data/split/folds.csv").write_text("path,label,group,fold\n" + "".join(
        f"{n},{'Positive' if t else 'Negative'},,{k}\n" for n, t, k in zip(names, y, folds)))
    for k in range(5):
        (tmp_path / f"data/oof/fold{k}").mkdir(parents=True)
        (tmp_path / f"data/oof/fold{k}/predictions.csv").write_text(
            "path,label,group,fold,probability,classifier_probability\n" + "".join(
                f"{n},{'Positive' if t else 'Negative'},,{k},{q},{q}\n" for n, t, f, q in zip(names, y, folds, low) if f == k))
    result = run_stage("evaluate", tmp_path, "")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "dvclive/evaluate/metrics.json").read_text())
    calibrated = calibration.cross_fitted(y, low, folds)[0]
    written = [float(r.split(",")[-1]) for r in (tmp_path / "plots/eval/predictions.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose(written, calibrated, atol=1e-6)
    assert metrics["out_of_fold"]["roc_auc"] == round(roc_auc_score(y, low), 6)
    assert metrics["out_of_fold"]["ece"] == round(calibration.expected_calibration_error(y, calibrated), 6)
    assert metrics["uncalibrated"]["ece"] == round(calibration.expected_calibration_error(y, low), 6)
    assert metrics["out_of_fold"]["ece"] < metrics["uncalibrated"]["ece"]  # measured: 0.051 against 0.166
    assert abs(metrics["out_of_fold"]["mean_probability"] - y.mean()) < abs(metrics["uncalibrated"]["mean_probability"] - y.mean())
    curve = json.loads((tmp_path / "dvclive/evaluate/plots/sklearn/calibration/out_of_fold.json").read_text())
    assert len(curve["calibration"]) > 5 and (tmp_path / "plots/eval/reliability.png").stat().st_size > 0


@pytest.mark.parametrize("predictions, message", [
    ({0: [("a.jpg", 0.1), ("b.jpg", 0.9)]}, "data/oof: no out-of-fold prediction for 2 labelled image(s) of fold(s) 1 "
                                            "(first c.jpg); dvc.yaml's fold matrix must list every fold"),
    ({0: [("a.jpg", 0.1), ("b.jpg", 0.9)], 1: [("c.jpg", 0.2), ("d.jpg", 0.8), ("a.jpg", 0.3)]},
     "data/oof/fold1/predictions.csv: a.jpg was already scored by data/oof/fold0/predictions.csv"),
    ({0: [("a.jpg", 0.1), ("b.jpg", 0.9)], 1: [("c.jpg", 0.2), ("d.jpg", 0.8), ("e.jpg", 0.3)]},
     "data/oof: 1 prediction(s) of images not in data/split/folds.csv (first e.jpg)"),
    ({0: [("a.jpg", 0.1), ("b.jpg", "high")], 1: [("c.jpg", 0.2), ("d.jpg", 0.8)]}, "data/oof: a probability is not a number"),
], ids=["fold-missing", "scored-twice", "unknown-image", "not-a-number"])
def test_evaluate_refuses_predictions_that_do_not_score_every_image_once(tmp_path, predictions, message):
    result = run_stage("evaluate", out_of_fold_project(tmp_path, predictions), "")
    assert_one_line_error(result, message)
    assert not (tmp_path / "dvclive").exists() and not (tmp_path / "plots").exists()


def test_evaluate_scores_every_image_from_its_folds_predictions(tmp_path):
    import json

    work = out_of_fold_project(tmp_path, {0: [("a.jpg", 0.4), ("b.jpg", 0.6)], 1: [("c.jpg", 0.7), ("d.jpg", 0.8)]})
    result = run_stage("evaluate", work, "train:\n  calibrate: false\n")  # the fold models' own probabilities
    assert result.returncode == 0, result.stderr
    metrics = json.loads((work / "dvclive/evaluate/metrics.json").read_text())
    assert metrics["out_of_fold"]["roc_auc"] == 0.75  # c (Negative, 0.7) outranks b (Positive, 0.6): 3 of 4 pairs
    assert metrics["out_of_fold"]["accuracy"] == 0.75  # only c is wrong at 0.5
    assert metrics["per_fold"]["roc_auc_each"] == {"fold0": 1.0, "fold1": 1.0}
    assert metrics["per_fold"]["roc_auc"] == {"mean": 1.0, "std": 0.0}
    rows = (work / "plots/eval/predictions.csv").read_text().splitlines()
    assert rows[0] == "path,fold,actual,predicted,probability" and rows[3] == "c.jpg,1,Negative,Positive,0.7"


def test_evaluate_scores_the_predicted_ratings_against_the_rated_ones(tmp_path):
    """folds.csv carries the raters' means, the fold predictions the heads' ratings: metrics.json's ratings are
    scipy's r, ρ and MAE over every image and per fold, the scatter a point an image; unrated data has none."""
    import json

    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    valence, arousal = rng.uniform(1, 7, 40), rng.uniform(1, 7, 40)
    predicted_valence, predicted_arousal = valence + rng.normal(0, 1, 40), 4 + rng.normal(0, 1, 40)
    y, folds = (valence > 4).astype(int), np.arange(40) % 2
    classifier = 1 / (1 + np.exp(4 - valence + rng.normal(0, 2, 40)))  # the classifier's own P(Positive): noisier
    (tmp_path / "data/split").mkdir(parents=True)
    (tmp_path / "data/split/folds.csv").write_text("path,label,group,fold,valence,arousal\n" + "".join(
        f"{i}.jpg,{('Negative', 'Positive')[y[i]]},,{folds[i]},{valence[i]},{arousal[i]}\n" for i in range(40)))
    for k in range(2):
        (tmp_path / f"data/oof/fold{k}").mkdir(parents=True)
        (tmp_path / f"data/oof/fold{k}/predictions.csv").write_text(
            "path,label,group,fold,probability,classifier_probability,predicted_valence,predicted_arousal\n" + "".join(
                f"{i}.jpg,{('Negative', 'Positive')[y[i]]},,{k},0.5,{classifier[i]},{predicted_valence[i]},"
                f"{predicted_arousal[i]}\n" for i in range(40) if folds[i] == k))
    result = run_stage("evaluate", tmp_path, "")
    assert result.returncode == 0, result.stderr
    ratings = json.loads((tmp_path / "dvclive/evaluate/metrics.json").read_text())["ratings"]
    for name, rated, predicted in (("valence", valence, predicted_valence), ("arousal", arousal, predicted_arousal)):
        assert ratings[name]["pearson_r"] == round(pearsonr(predicted, rated).statistic, 6)
        assert ratings[name]["spearman"] == round(spearmanr(predicted, rated).statistic, 6)
        assert ratings[name]["mae"] == round(float(np.abs(predicted - rated).mean()), 6)
        assert ratings[name]["folds"]["pearson_r_each"]["fold1"] == round(
            pearsonr(predicted[folds == 1], rated[folds == 1]).statistic, 6)
        points = json.loads((tmp_path / f"dvclive/evaluate/plots/custom/ratings_{name}.json").read_text())
        assert [(p["rated"], p["predicted"]) for p in points] == [(float(a), round(float(b), 6))
                                                                   for a, b in zip(rated, predicted)]
    # each score P(Positive) can be made from, ranking the labels (P(Positive) itself is a constant 0.5 here)
    by_score = json.loads((tmp_path / "dvclive/evaluate/metrics.json").read_text())["roc_auc_by_score"]
    assert by_score == {"classifier": round(roc_auc_score(y, classifier), 6),
                        "valence_head": round(roc_auc_score(y, predicted_valence), 6)}
    assert by_score["classifier"] < by_score["valence_head"]
    assert ratings["arousal"]["pearson_r"] < 0.5 < ratings["valence"]["pearson_r"]  # measured 0.06 and 0.87
    assert "valence" in result.stdout and "Pearson r" in result.stdout

    work = out_of_fold_project(tmp_path / "unrated", {0: [("a.jpg", 0.4), ("b.jpg", 0.6)],
                                                      1: [("c.jpg", 0.7), ("d.jpg", 0.8)]})
    assert run_stage("evaluate", work, "").returncode == 0
    unrated = json.loads((work / "dvclive/evaluate/metrics.json").read_text())
    assert "ratings" not in unrated and unrated["roc_auc_by_score"] == {"classifier": 0.75}  # no valence head
    assert json.loads((work / "dvclive/evaluate/plots/custom/ratings_valence.json").read_text()) == []


def tempting_archive(path):
    """An OASIS-shaped archive built to leak: a concept with many photos, a re-encoded copy under another
    concept, and a near-copy of a Negative photo rated Positive under a third."""
    import io

    import numpy as np
    from PIL import Image

    from helpers import make_oasis_zip

    def image(seed, brighten=0, fmt="PNG"):
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (10, 12, 3)).repeat(8, axis=0).repeat(8, axis=1) + brighten
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format=fmt)
        return buf.getvalue()

    rows, images = [], {}
    for i in range(1, 13):
        rows.append((f"Dog {i}", "Animal", 6.0))
        images[f"Dog {i}.png"] = image(i)
    rows += [("Cat 1", "Animal", 5.0), ("Kitten 1", "Animal", 5.5), ("Snake 1", "Animal", 2.0),
             ("Rope 1", "Object", 5.5)]
    images.update({"Cat 1.png": image(50), "Kitten 1.bmp": image(50, fmt="BMP"), "Snake 1.png": image(60),
                   "Rope 1.jpg": image(60, brighten=10, fmt="JPEG")})
    for k in range(24):
        for i in range(1, 2 + k % 3):
            rows.append((f"Thing{k} {i}", "Object", 2.5 if k % 3 == 0 else 5.0))
            images[f"Thing{k} {i}.png"] = image(100 + 10 * k + i)
    return make_oasis_zip(path, rows, images)


def test_no_concept_or_near_copy_crosses_the_split(tmp_path):
    import json

    from valence.files import read_csv

    (tmp_path / "data/raw").mkdir(parents=True)
    tempting_archive(tmp_path / "data/raw/oasis.zip")
    for stage in ("unzip", "audit"):
        result = run_stage(stage, tmp_path, "")
        assert result.returncode == 0, result.stderr
    audit = json.loads((tmp_path / "metrics/audit.json").read_text())
    assert audit["exact_duplicate_sets"] == 1 and audit["label_conflicts"] == 1 and audit["near_duplicate_pairs"] == 2
    together = [{"Dog"}, {"Cat 1", "Kitten 1"}, {"Snake 1", "Rope 1"}]
    crossings = {}
    for group_by in ("concept", "none"):
        for seed in range(4):
            result = run_stage("split", tmp_path, f"split:\n  seed: {seed}\n  group_by: {group_by}\n")
            assert result.returncode == 0, result.stderr
            sides = {name: {r["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0] for r in read_csv(f"{tmp_path}/data/split/{name}.csv")}
                     for name in ("train", "test")}
            concept = lambda name: name.rsplit(" ", 1)[0] if name.startswith("Dog") else name  # noqa: E731
            split = json.loads((tmp_path / "metrics/split.json").read_text())
            crossed = [t for t in together if all(any(concept(n) in t for n in side) for side in sides.values())]
            folds = read_csv(f"{tmp_path}/data/split/folds.csv")
            fold_of = {r["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]: r["fold"] for r in folds}
            assert sorted(r["path"] for r in folds) == sorted(r["path"] for r in read_csv(f"{tmp_path}/data/labels.csv"))
            assert {n for n, k in fold_of.items() if k == "0"} == sides["test"]  # fold 0 is the test split
            spread = [t for t in together if len({k for n, k in fold_of.items() if concept(n) in t}) > 1]
            crossings[group_by, seed] = (crossed, split["groups_in_both_splits"], split["near_duplicate_pairs_across_splits"],
                                         spread, split["groups_in_several_folds"], split["near_duplicate_pairs_across_folds"])
    for seed in range(4):
        assert crossings["concept", seed] == ([], 0, 0, [], 0, 0), seed
    # image by image, the tempting archive does leak: the checks above are able to fail
    assert all(crossings["none", seed][1] > 0 and crossings["none", seed][0] for seed in range(4))
    assert all(crossings["none", seed][3] and crossings["none", seed][4] > 0 for seed in range(4))


def module_files(name):
    """This repository's files that importing dotted ``name`` runs: its packages' __init__.py, then the module."""
    parts = name.split(".")
    stems = [ROOT.joinpath(*parts[:depth]) for depth in range(1, len(parts) + 1)]
    return [c for stem in stems for c in (stem / "__init__.py", stem.with_suffix(".py")) if c.is_file()]


def imported_files(path, seen=None):
    """Every file of this repository that ``path`` imports, directly or through others, lazy imports included."""
    seen = set() if seen is None else seen
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in (c for name in names if name.split(".")[0] == "valence" for c in module_files(name)):
            if candidate not in seen:
                seen.add(candidate)
                imported_files(candidate, seen)
    return seen


@pytest.mark.parametrize("stage", sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]))
def test_a_stages_code_deps_are_exactly_the_files_it_runs(stage):
    """A file missing from deps: an edit to it would not re-run the stage, and dvc.lock would vouch for stale
    outputs."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    command = spec["cmd"].split()
    entries = [ROOT / command[1]] if command[1] != "-m" else module_files(command[2])
    needed = {*entries, *(f for entry in entries for f in imported_files(entry))}
    deps = {ROOT / d for d in spec["deps"] if (ROOT / d).suffix == ".py"}
    missing = sorted(str(p.relative_to(ROOT)) for p in needed - deps)
    assert not missing, f"{stage} runs {missing} but does not list them in deps"
    # and nothing more: an edit to code a stage never runs must not re-run it
    extra = sorted(str(p.relative_to(ROOT)) for p in deps - needed)
    assert not extra, f"{stage} lists {extra} in deps but never runs them"


def test_a_near_duplicate_cluster_too_large_for_even_folds_stops_split_with_one_line(tmp_path):
    """Half the photos near-copies of one another (a burst, a video): 5 folds of 20 % ± 5 % are impossible."""
    from valence.files import write_csv

    rows = [{"path": f"data/images/{label}/{i:02d}.jpg", "label": label} for label in ("Negative", "Positive")
            for i in range(30)]
    write_csv(tmp_path / "data/labels.csv", [{**r, "group": r["path"]} for r in rows], ["path", "label", "group"])
    burst = [r for r in rows if r["label"] == "Positive"][:25] + [r for r in rows if r["label"] == "Negative"][:5]
    write_csv(tmp_path / "data/near_duplicates.csv",
              [{**r, "representative": burst[0]["path"], "distance": 3} for r in burst],
              ["path", "label", "representative", "distance"])
    result = run_stage("split", tmp_path, "")
    assert_one_line_error(result, "data/labels.csv: the largest group, ")
    assert "holds 30 images (50.0% of all), so 5 folds of 20% ± 5% are impossible" in result.stderr
    assert not (tmp_path / "data/split").exists()  # nothing half-written
    result = run_stage("split", tmp_path, "split:\n  tolerance: 0.5\n")  # allowed: the shares are reported
    assert result.returncode == 0, result.stderr
    import json

    split = json.loads((tmp_path / "metrics/split.json").read_text())
    assert split["largest_group"]["images"] == 30 and sum(split["fold_shares"].values()) == pytest.approx(1, abs=1e-3)


def test_the_scale_benchmark_runs_the_data_stages_and_tabulates_them(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "scale.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/scale.py"), "--sizes", "40", "80", "--no-features",
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    sizes = json.loads(out.read_text())["sizes"]
    assert [s["images"] for s in sizes] == [40, 80]
    assert all(s[stage]["seconds"] > 0 and s[stage]["peak_rss_mb"] > 0 for s in sizes
               for stage in ("download", "unzip", "audit", "split"))
    assert "| 80 |" in result.stdout and "80 took" in result.stdout


def test_a_burst_of_near_copies_in_an_archive_stops_split_with_one_line_naming_it(tmp_path):
    """unzip → audit → split on a generated archive: 40 noisy shots of one scene beside 40 distinct photos. The
    audit finds the burst as one cluster; half the photos in one group cannot make 5 even folds."""
    import io
    import json

    import numpy as np
    from PIL import Image

    from helpers import write_zip

    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (10, 12, 3)).astype(float)

    def jpeg(pixels):
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((96, 80), Image.Resampling.BILINEAR).save(buf, "JPEG")
        return buf.getvalue()

    members = {f"photos/Positive/burst {i:02d}.jpg": jpeg(scene + rng.normal(0, 4, scene.shape)) for i in range(40)}
    members.update({f"photos/{('Negative', 'Positive')[i % 2]}/other {i:02d}.jpg": jpeg(rng.integers(0, 256, (10, 12, 3)))
                    for i in range(40)})
    (tmp_path / "data/raw").mkdir(parents=True)
    write_zip(tmp_path / "data/raw/photos.zip", members)
    for stage in ("unzip", "audit"):
        result = run_stage(stage, tmp_path, "")
        assert result.returncode == 0, result.stderr
    audit = json.loads((tmp_path / "metrics/audit.json").read_text())
    assert audit["largest_cluster"] == 40 and audit["near_duplicate_clusters"] == 1
    result = run_stage("split", tmp_path, "")
    assert_one_line_error(result, "data/labels.csv: the largest group, 'Positive/burst 00', holds 40 images (50.0% of all)")


def declared_outputs():
    """Every path dvc.yaml names as an output, metric or plot file of a stage (matrix stages' folders included)."""
    paths = []
    for spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for entry in spec.get(key, []):
                paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return [p.replace("${item.fold}", "*") for p in paths]


def test_every_committed_metric_and_plot_file_is_a_stages_output():
    """A tracked file under metrics/, plots/ or dvclive/ that no stage writes is a stale number that looks current
    (as metrics/metrics.json from an old commit once was)."""
    import fnmatch
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "metrics", "plots", "dvclive"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    outputs = declared_outputs()
    stale = [f for f in tracked if not any(fnmatch.fnmatch(f, out) or f.startswith(out.rstrip("/") + "/") for out in outputs)]
    assert tracked and not stale, f"tracked in git but written by no stage in dvc.yaml: {stale}"


def test_every_path_valence_config_names_is_a_dvc_output():
    """valence.config names the paths; dvc.yaml tells DVC about them: each config path is a stage's out or metric,
    a folder of them, or lies inside one (data/oof inside the fold matrix's data/oof/fold${item.fold}), so they cannot drift apart."""
    from pathlib import Path, PurePosixPath

    from valence import config

    declared = set()
    for spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for entry in spec.get("outs", []) + spec.get("metrics", []):
            out = next(iter(entry)) if isinstance(entry, dict) else entry
            declared.add(PurePosixPath(out.replace("${item.fold}", "0")))
    named = {name: PurePosixPath(value.as_posix()) for name, value in vars(config).items() if isinstance(value, Path)}
    assert len(named) > 20
    for name, path in {**named, "OOF": PurePosixPath(config.fold_dir(0).as_posix())}.items():
        assert any(path == out or out in path.parents or path in out.parents for out in declared), \
            f"config.{name} = {path}: no stage writes it"


@pytest.mark.parametrize("stage", ["download", "unzip", "audit", "split", "non_photos", "plots_page"])
def test_the_stages_before_features_do_not_run_the_model_registry(stage):
    """Adding a backbone (valence/registry.py and its pin) re-runs nothing that does not use models."""
    assert "valence/registry.py" not in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
