"""valence.use.explain: occlusion maps that point at what moves P(Positive), from either model file."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, project_params, repo_params
from valence.data.demo_faces import draw_face
from valence.data.labels import label_of
from valence.use import explain

GRID = explain.GRID


def brightness_of_top_left(batch):
    """A stand-in model: P(Positive) rises with the brightness of the top-left quarter."""
    h, w = batch.shape[1] // 2, batch.shape[2] // 2
    return batch[:, :h, :w].mean(axis=(1, 2, 3)) / 255


def test_the_map_marks_the_region_the_score_depends_on_and_is_flat_where_nothing_matters():
    image = np.full((64, 80, 3), 40, np.uint8)
    image[:32, :40] = 220  # bright top-left quarter: covering it with the mean colour lowers the score
    probability, heat = explain.explain(brightness_of_top_left, image)
    assert probability == pytest.approx(220 / 255)
    assert heat.shape == (GRID, GRID) and heat[:GRID // 2, :GRID // 2].min() > 0
    # a patch straddling the edge reaches one cell past it; beyond that nothing moves the score
    assert np.abs(heat[GRID // 2 + 1:, :]).max() < 1e-6 and np.abs(heat[:, GRID // 2 + 1:]).max() < 1e-6
    _, flat = explain.explain(brightness_of_top_left, np.full((64, 80, 3), 90, np.uint8))
    assert np.abs(flat).max() == 0  # a plain photo: covering any patch changes nothing


def test_each_covered_copy_hides_one_patch_in_the_mean_colour():
    image = np.arange(48 * 40 * 3, dtype=np.uint32).reshape(48, 40, 3).astype(np.uint8)
    covered, positions = explain.occluded(image)
    assert len(covered) == len(positions) == (GRID - explain.PATCH + 1) ** 2
    changed = (covered != image[None]).any(axis=3)
    r, c = positions[9]  # second row of patches, third column: rows 6–18, columns 10–20 at 48 × 40
    rows, cols = explain.cell_edges(48), explain.cell_edges(40)
    assert changed[9].sum() <= (rows[r + 2] - rows[r]) * (cols[c + 2] - cols[c])
    assert not changed[9][:rows[r]].any() and not changed[9][rows[r + 2]:].any()


def quadrant_face(quadrant, smiling=True, size=(96, 120), seed=3):
    """A plain grey photo with one demo face drawn into ``quadrant`` (0 top-left … 3 bottom-right)."""
    image = np.full((*size, 3), 128, np.uint8)
    h, w = size[0] // 2, size[1] // 2
    face = draw_face(np.random.default_rng(seed), smiling, h, w)
    r, c = divmod(quadrant, 2)
    image[r * h:(r + 1) * h, c * w:(c + 1) * w] = face
    return image


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """small_cnn trained on demo faces (smiling Positive, frowning Negative), as a classifier."""
    from valence.learn import train_on_images
    from valence.use.classifier import KerasClassifier

    folder = tmp_path_factory.mktemp("faces")
    rng, rows = np.random.default_rng(0), []
    for i in range(32):
        label = ("Negative", "Positive")[i % 2]
        path = folder / f"{i}.png"
        Image.fromarray(draw_face(rng, label == "Positive", 48, 60)).save(path)
        rows.append({"path": str(path), "label": label, "group": str(i)})
    p = repo_params("train")
    p = dataclasses.replace(p.using("small_cnn", image_height=48, image_width=60, epochs=12), batch_size=8,
                            validation_size=0.25, seed=1)
    model, _ = train_on_images.train(p, rows)
    return KerasClassifier(model)


@pytest.mark.parametrize("quadrant", [0, 1, 2, 3])  # off the diagonal too: a transposed map fails
def test_the_demo_models_map_points_at_the_face_and_is_flat_on_a_plain_photo(demo_model, quadrant):
    from valence.data.images import model_input
    from valence.use.predict import score_images

    def score(batch):
        return score_images(demo_model, batch)

    photo = model_input(Image.fromarray(quadrant_face(quadrant)), demo_model.height, demo_model.width)
    _, heat = explain.explain(score, photo)
    strongest = np.unravel_index(np.abs(heat).argmax(), heat.shape)
    r, c = divmod(quadrant, 2)
    assert (strongest[0] // (GRID // 2), strongest[1] // (GRID // 2)) == (r, c), np.round(heat, 3)
    _, flat = explain.explain(score, np.full_like(photo, 128))
    assert np.abs(flat).max() < 1e-6


def test_keras_and_litert_files_give_the_same_map(tiny_models):
    from valence.use.classifier import open_classifier
    from valence.use.predict import score_images

    image = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    maps = [explain.explain(lambda batch, m=open_classifier(f): score_images(m, batch, True), image)
            for f in tiny_models]
    assert maps[0][0] == pytest.approx(maps[1][0], abs=1e-5)
    np.testing.assert_allclose(maps[0][1], maps[1][1], atol=1e-5)
    assert np.abs(maps[0][1]).max() > 0


def test_explain_command_writes_a_png_and_a_json_per_photo_and_skips_the_rest(tmp_path, tiny_models):
    (tmp_path / "params.yaml").write_text(project_params({}))
    model = tiny_models[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed in (("a.png", 0), ("b.jpg", 1)):
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(photos / name)
    (photos / "notes.txt").write_text("hello")
    result = subprocess.run([sys.executable, "-m", "valence", "explain", "photos", "--model", str(model), "--out", "maps"],
                            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 of 3 files" in result.stderr and "notes.txt" in result.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["a.json", "a.png", "b.json", "b.png"]
    row = json.loads((tmp_path / "maps/a.json").read_text())
    band = repo_params("evaluate").uncertain_band  # the label as evaluate.uncertain_band has it
    assert row["path"] == "photos/a.png" and row["method"] == explain.OCCLUSION
    assert row["label"] == label_of(row["probability"], 0.5, band) and band > 0
    assert np.asarray(row["map"]).shape == (GRID, GRID)
    with Image.open(tmp_path / "maps/a.png") as sheet:
        assert sheet.size == (2 * 32 + 2, 24 + 24)  # photo, a gap and overlay at the model's 24 × 32, a caption line


@pytest.mark.parametrize("suffix", [0, 1])  # .keras, .tflite
def test_explain_command_gives_a_frozen_release_its_own_map_summing_to_the_logit(tmp_path, tiny_mapped_models, suffix):
    """A model with LOGIT_MAP is explained by it, in the scoring pass: the JSON names the method and its cells
    add up to the mean of the photo's and its mirror's logits (flip averaging, as params.yaml says)."""
    from valence.use.classifier import open_classifier

    (tmp_path / "params.yaml").write_text(project_params({}))
    (tmp_path / "photos").mkdir()
    pictures = {"dark.png": 40, "bright.png": 210}
    for name, level in pictures.items():
        pixels = np.random.default_rng(level).integers(level - 40, level + 40, (64, 80, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photos" / name)
    model = tiny_mapped_models[suffix]
    result = run_explain(tmp_path, "photos", "--model", model, "--out", "maps")
    assert result.returncode == 0, result.stderr
    classifier = open_classifier(model)
    for name in pictures:
        row = json.loads((tmp_path / "maps" / name.replace(".png", ".json")).read_text())
        assert row["method"] == explain.CLASS_ACTIVATION and np.asarray(row["map"]).shape == (2, 3)
        pixels = np.asarray(Image.open(tmp_path / "photos" / name))[None]
        logits = [np.log(p / (1 - p)) for p in (classifier.probabilities(v)[0] for v in (pixels, pixels[:, :, ::-1]))]
        assert np.sum(row["map"]) == pytest.approx(np.mean(logits), abs=1e-4)
        assert explain.marked(tmp_path / "maps" / name.replace(".json", ".png"))
    assert json.loads((tmp_path / "maps/bright.json").read_text())["probability"] > 0.5 > json.loads(
        (tmp_path / "maps/dark.json").read_text())["probability"]


def test_explain_by_occlusion_on_asking_even_for_a_model_with_its_own_map(tmp_path, tiny_mapped_models):
    (tmp_path / "photos").mkdir()
    noise_photo(tmp_path / "photos/a.png", 3)
    result = run_explain(tmp_path, "photos", "--model", tiny_mapped_models[1], "--out", "maps", "--occlusion")
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "maps/a.json").read_text())
    assert row["method"] == explain.OCCLUSION and np.asarray(row["map"]).shape == (GRID, GRID)


def run_explain(cwd, *args):
    (cwd / "params.yaml").write_text(project_params({}))
    return subprocess.run([sys.executable, "-m", "valence", "explain", *map(str, args)], cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def noise_photo(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)


def contents(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else "folder"
            for p in sorted(folder.rglob("*"))}


def test_explain_refuses_to_write_over_a_file_that_is_not_its_own_map_and_writes_nothing(tmp_path):
    """photos/x.jpg's map would be photos/x.png, the user's own photo (sorted after x.jpg, so read after it was
    written over): refused before the model loads (a missing one here), with nothing written; so is a file of the
    user's in an output folder, though the maps before it in the listing would not touch it."""
    photos, maps = tmp_path / "photos", tmp_path / "maps"
    photos.mkdir()
    maps.mkdir()
    for name, seed in (("x.jpg", 0), ("x.png", 1), ("y.jpg", 2)):
        noise_photo(photos / name, seed)
    (maps / "y.json").write_text("the user's notes on y")
    before = contents(photos), contents(maps)
    result = run_explain(tmp_path, "photos", "--out", "photos", "--model", "nope.keras")
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == (
        "error: photos/x.png: --out would replace one of the photos to explain; choose another --out"), result.stderr
    result = run_explain(tmp_path, "photos", "--out", "maps", "--model", "nope.keras")
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == (
        "error: maps/y.json: already there and not a map of valence explain; move it, or choose another --out")
    assert "Traceback" not in result.stderr and (contents(photos), contents(maps)) == before


def test_explain_writes_its_own_maps_again_and_does_not_explain_them(tmp_path, tiny_models):
    """Run twice into one folder, explain rewrites the maps it wrote (marked: a PNG text chunk, the JSON's keys);
    with --out among the folders it reads, its earlier maps are left out of the photos, said once."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed in (("a.jpg", 0), ("b.jpg", 1)):
        noise_photo(photos / name, seed)
    noise_photo(tmp_path / "plain.png", 2)
    originals = contents(photos)
    for _ in range(2):
        result = run_explain(tmp_path, "photos", "--out", "maps", "--model", tiny_models[1])
        assert result.returncode == 0, result.stderr
    assert sorted(contents(tmp_path / "maps")) == ["a.json", "a.png", "b.json", "b.png"]
    assert explain.marked(tmp_path / "maps/a.png") and not explain.marked(tmp_path / "plain.png")
    for run in range(2):
        result = run_explain(tmp_path, "photos", "--out", "photos", "--model", tiny_models[1])
        assert result.returncode == 0, result.stderr
        assert ("photos: 4 map file(s) an earlier explain wrote there left out" in result.stderr) == (run == 1)
    assert sorted(contents(photos)) == ["a.jpg", "a.json", "a.png", "b.jpg", "b.json", "b.png"]
    assert {name: contents(photos)[name] for name in originals} == originals
    assert json.loads((photos / "b.json").read_text())["path"] == "photos/b.jpg"
