"""Stage 10: export the released model as LiteRT (TFLite), for serving without TensorFlow, and check it.

    python -m stages.export

Reads models/model.keras and the first export.photos of fold 0's images (data/split/test.csv): a conversion
error shows on any photo, so a few are enough. Writes models/model.tflite and metrics/export.json: the largest
difference between the two models' P(Positive) on those photos (and, for a model with rating heads, each rating's,
which may differ by export.tolerance × its scale's width; the map of why, LOGIT_MAP, cell by cell, by that × the
range its cells span on these photos, at least 1), the largest
difference between the Keras model and its own heads (models/heads.json) scored on the stored features of the
same photos (max_abs_difference_scorer: the folds score those heads, so what they measured is what ships), and
both file sizes. The file is renamed into place only when every difference is within its tolerance. Prints
where the time went (load, convert, each reader).
"""
import time
from pathlib import Path

import numpy as np

from valence import config, params, train_params
from valence.config import LOGIT_MAP, PHOTO, PROBABILITY
from valence.data.folds import MANIFEST_COLUMNS
from valence.errors import PipelineError, run_stage
from valence.files import atomic_path, digest_of, read_csv, write_json
from valence.registry import FROZEN_MODEL

KERAS, LITERT = config.MODEL, config.LITERT


def main():
    p = params.load("export")
    rows = read_csv(config.TEST_SPLIT, required=MANIFEST_COLUMNS)[:p.photos]
    from valence.data.images import load_images
    from valence.learn import features, heads, models
    from valence.use import classifier, provenance  # TensorFlow loads only after the inputs are checked
    from valence.use.predict import score_all

    seconds, started = {}, time.perf_counter()

    def took(phase):
        nonlocal started
        seconds[phase], started = time.perf_counter() - started, time.perf_counter()

    keras_model = classifier.open_classifier(KERAS)
    pixels = load_images([r["path"] for r in rows], keras_model.height, keras_model.width, desc="test")
    took("load")
    with atomic_path(LITERT, suffix=".tflite") as tmp:
        models.export_litert(keras_model.model, tmp)
        provenance.embed(tmp, {**provenance.embedded(KERAS), "made_by": "valence export",  # and from which .keras
                               "from_keras_md5": digest_of(KERAS, "md5")})
        litert_model = classifier.LiteRTClassifier(tmp)
        took("convert")
        if litert_model.ratings != keras_model.ratings:
            raise PipelineError(f"{LITERT}: the LiteRT model's ratings {litert_model.ratings} are not the Keras "
                                f"model's {keras_model.ratings}; not written")
        scored = {}
        for name, model in (("keras", keras_model), ("litert", litert_model)):
            batches = [score_all(model, pixels[i:i + p.batch_size]) for i in range(0, len(pixels), p.batch_size)]
            scored[name] = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
            took(name)
        widths = {PROBABILITY: 1.0, **{k: high - low for k, (low, high) in keras_model.ratings.items()},
                  **({PHOTO: 1.0} if keras_model.photo_check else {})}
        if keras_model.logit_map:  # logit units, unbounded: held to the tolerance of the range its cells span here
            widths[LOGIT_MAP] = max(1.0, float(np.ptp(scored["keras"][LOGIT_MAP])))
        differences = {k: float(abs(scored["keras"][k] - scored["litert"][k]).max()) for k in widths}
        for output, difference in differences.items():
            if difference > p.tolerance * widths[output]:
                raise PipelineError(f"{LITERT}: LiteRT and Keras differ by up to {difference:.2e} in "
                                    f"{'P(Positive)' if output == PROBABILITY else output} on the test images, "
                                    f"over export.tolerance ({p.tolerance:g}) × {widths[output]:g}; not written")
        difference = differences.pop(PROBABILITY)
        # what the folds measured is what ships: the release's own heads on the stored features of the same photos
        # (view 0, the photo itself, as the Keras model saw it) give every output the model gives
        if train_params.load().model == FROZEN_MODEL:  # other models' heads sit on their own layers
            stored = features.load(config.FEATURES, [r["path"] for r in rows])[:config.views_scored(False)]
            by_heads = classifier.named_scores(heads.score(heads.load(config.HEADS), stored))[0]
            differences["scorer"] = max(float(abs(by_heads[k] - scored["keras"][k]).max()) for k in by_heads)
            if differences["scorer"] > p.tolerance:
                raise PipelineError(f"{config.HEADS}: the heads scored on {config.FEATURES} differ from {KERAS} by "
                                    f"up to {differences['scorer']:.2e} on the test images, over export.tolerance "
                                    f"({p.tolerance:g}): the release is not the model the folds measured; not written")
            took("scorer")
        litert_mb = tmp.stat().st_size / 2**20
    write_json(config.EXPORT_METRICS, {"n_test": len(rows), "max_abs_difference": float(f"{difference:.3g}"),
                                       **{f"max_abs_difference_{k}": float(f"{v:.3g}") for k, v in differences.items()},
                                       "keras_mb": round(Path(KERAS).stat().st_size / 2**20, 2),
                                       "litert_mb": round(litert_mb, 2)})
    print("seconds: " + ", ".join(f"{phase} {s:.1f}" for phase, s in seconds.items()))
    print(f"wrote {LITERT} ({litert_mb:.1f} MB); largest difference from Keras {difference:.2e} on {len(rows)} photos")


if __name__ == "__main__":
    run_stage(main)
