"""Stage 4: train the model named by train.model on the training manifest.

    python stages/train.py

Reads data/split/train.csv and the images it lists; writes models/model.keras (self-contained: RGB float32
0–255 at train.<model>.image_height × image_width in, P(Positive) out), plots/train/history.csv (loss,
accuracy and AUC per epoch and phase, train and validation) and plots/train/learning_curves.png.
"""
import _path  # noqa: F401
from valence import params
from valence.errors import run_stage
from valence.files import atomic_path, read_csv, write_csv
from valence.splitting import MANIFEST_COLUMNS

HISTORY = "plots/train/history.csv"


def main():
    p = params.load("train")
    rows = read_csv("data/split/train.csv", required=MANIFEST_COLUMNS)
    from valence import plotting, training  # TensorFlow loads only after params and inputs are checked

    model, history = training.train(p, rows)
    with atomic_path("models/model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    write_csv(HISTORY, history, training.HISTORY_COLUMNS)
    plotting.learning_curves(history, "plots/train/learning_curves.png")
    print(f"wrote models/model.keras after {len(history)} epochs")


if __name__ == "__main__":
    run_stage(main)
