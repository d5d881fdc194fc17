"""Stage 10: export the released model as LiteRT (TFLite), for serving without TensorFlow, and check it.

    python -m stages.export

Reads models/model.keras and fold 0's images (data/split/test.csv, a fifth of the labelled images: enough to
compare, quicker than all); writes models/model.tflite and metrics/export.json: the largest difference between
the two models' P(Positive) over those images, and
both file sizes. The file is renamed into place only when the difference is within export.tolerance.
"""
import time
from pathlib import Path

from valence import params
from valence.data.folds import MANIFEST_COLUMNS
from valence.errors import PipelineError, run_stage
from valence.files import atomic_path, read_csv, write_json

KERAS, LITERT = "models/model.keras", "models/model.tflite"


def main():
    p = params.load("export")
    rows = read_csv("data/split/test.csv", required=MANIFEST_COLUMNS)
    from valence.data.images import load_images
    from valence.learn import models
    from valence.use import classifier  # TensorFlow loads only after the inputs are checked
    from valence.use.predict import score_batches

    keras_model = classifier.open_classifier(KERAS)
    pixels = load_images([r["path"] for r in rows], keras_model.height, keras_model.width, desc="test")
    with atomic_path(LITERT, suffix=".tflite") as tmp:
        models.export_litert(keras_model.model, tmp)
        litert_model = classifier.LiteRTClassifier(tmp)
        scored = {}
        for name, model in (("keras", keras_model), ("litert", litert_model)):
            started = time.perf_counter()
            scored[name] = score_batches(model, pixels, p.batch_size, desc=name), time.perf_counter() - started
        difference = float(abs(scored["keras"][0] - scored["litert"][0]).max())
        if difference > p.tolerance:
            raise PipelineError(f"{LITERT}: LiteRT and Keras differ by up to {difference:.2e} in P(Positive) on "
                                f"the test images, over export.tolerance ({p.tolerance:g}); not written")
        litert_mb = tmp.stat().st_size / 2**20
    write_json("metrics/export.json", {"n_test": len(rows), "max_abs_difference": float(f"{difference:.3g}"),
                                       "keras_mb": round(Path(KERAS).stat().st_size / 2**20, 2),
                                       "litert_mb": round(litert_mb, 2)})
    for name, (_, took) in scored.items():
        print(f"{name}: {len(rows) / took:.1f} images/s on the test images")
    print(f"wrote {LITERT} ({litert_mb:.1f} MB); largest difference from Keras {difference:.2e}")


if __name__ == "__main__":
    run_stage(main)
