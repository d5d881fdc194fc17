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


def test_demo_download_then_unzip_keeps_earlier_outputs_on_failure(tmp_path):
    params_text = "download:\n  source: demo\n  demo_images_per_class: 3\n  demo_height: 20\n  demo_width: 20\n"
    assert run_stage("download", tmp_path, params_text).returncode == 0
    assert run_stage("unzip", tmp_path, params_text).returncode == 0
    labels = (tmp_path / "data/labels.csv").read_bytes()
    result = run_stage("unzip", tmp_path, params_text + "unzip:\n  layout: rated_csv\n")
    assert_one_line_error(result, "data/raw/demo.zip: expected one rated CSV")
    assert (tmp_path / "data/labels.csv").read_bytes() == labels
    assert len(list((tmp_path / "data/images").rglob("*.jpg"))) == 6
    assert not list((tmp_path / "data").glob(".*tmp"))


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
        for name in names:
            if name == "_path":
                candidate = ROOT / "stages/_path.py"
            elif name.split(".")[0] == "valence":
                candidate = ROOT / (name.replace(".", "/") + ".py")
            else:
                continue
            if candidate.is_file() and candidate not in seen:
                seen.add(candidate)
                imported_files(candidate, seen)
    return seen


@pytest.mark.parametrize("stage", sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]))
def test_a_stages_code_deps_are_exactly_the_files_it_runs(stage):
    """A file missing from deps: an edit to it would not re-run the stage, and dvc.lock would vouch for stale
    outputs."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    command = spec["cmd"].split()
    entry = ROOT / (command[1] if command[1] != "-m" else command[2].replace(".", "/") + ".py")
    needed = {entry, *imported_files(entry)}
    deps = {ROOT / d for d in spec["deps"] if (ROOT / d).suffix == ".py"}
    missing = sorted(str(p.relative_to(ROOT)) for p in needed - deps)
    assert not missing, f"{stage} runs {missing} but does not list them in deps"
    # and nothing more: an edit to code a stage never runs must not re-run it
    extra = sorted(str(p.relative_to(ROOT)) for p in deps - needed)
    assert not extra, f"{stage} lists {extra} in deps but never runs them"
