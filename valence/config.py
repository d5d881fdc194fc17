"""Every path the pipeline reads or writes, and every output and column name, defined once (Cookiecutter Data
Science's config module): the stages, the package and the tests import them from here. dvc.yaml names the same
paths for DVC; tests/test_stages.py checks that every path here is a stage's output."""
import re
from pathlib import Path

# data/: what the stages make from the archive, in pipeline order
RAW = Path("data/raw")  # the download stage's archive (download.source url or demo)
IMAGES = Path("data/images")  # unzip: every usable image, by class or as the archive had them
LABELS = Path("data/labels.csv")  # unzip: path, label, valence, arousal, group per image
SKIPPED = Path("data/skipped.csv")  # unzip: images it could not use, and why
AUDIT = Path("data/audit.json")  # audit: quality flags and label conflicts
NEAR_DUPLICATES = Path("data/near_duplicates.csv")  # audit: near-copies, joined into one group by split
FOLDS = Path("data/split/folds.csv")  # split: every labelled image with its fold
TRAIN_SPLIT, TEST_SPLIT = Path("data/split/train.csv"), Path("data/split/test.csv")  # split: fold 0 held out
NON_PHOTOS = Path("data/non_photos")  # non_photos: generated images that are not photos
NON_PHOTOS_INDEX = NON_PHOTOS / "index.csv"  # path, kind per generated image
FEATURES = Path("data/features")  # features: frozen backbone features of every view of every image
OOF = Path("data/oof")  # fold@k: data/oof/fold<k>/, each held-out fold scored by a model that never saw it


def fold_dir(fold):
    return OOF / f"fold{fold}"


PREDICTIONS_CSV, TRAINED_ON_CSV, UNSEEN_KINDS_CSV = "predictions.csv", "trained_on.csv", "non_photos.csv"  # in a fold's dir

# models/: the release
MODEL = Path("models/model.keras")  # train: the released Keras model
HEADS = Path("models/heads.json")  # train: the release's heads as values (valence.learn.heads)
TRAINED_ON = Path("models/trained_on.csv")  # train: the images the release learnt from
LITERT = Path("models/model.tflite")  # export: the same model for LiteRT

# metrics, dvclive and plots
DATA_METRICS, AUDIT_METRICS = Path("metrics/data.json"), Path("metrics/audit.json")
SPLIT_METRICS, EXPORT_METRICS = Path("metrics/split.json"), Path("metrics/export.json")
TRAIN_LIVE, EVALUATE_LIVE = Path("dvclive/train"), Path("dvclive/evaluate")
CALIBRATION = TRAIN_LIVE / "calibration.json"  # train.calibrate's beta map (a, b, c) and the images it was fit on
LEARNING_CURVES = Path("plots/train/learning_curves.png")
NEAR_DUPLICATES_PLOT = Path("plots/audit/near_duplicates.png")
EVAL_PLOTS = Path("plots/eval")  # roc, precision_recall, confusion_matrix, reliability PNGs
EVAL_PREDICTIONS = EVAL_PLOTS / "predictions.csv"  # a row per labelled image, calibrated out of fold
MISTAKES = EVAL_PLOTS / "mistakes.png"
PAGE_TEMPLATE = Path("plots/page_template.html")  # dvc plots show's offline page

# Outputs: what the released model gives, and the columns that carry each score (data/oof, predict, /predict)
PROBABILITY = "probability"  # P(Positive): the release's main output, and its column everywhere
CLASSIFIER_PROBABILITY = "classifier_probability"  # the classifier's own P(Positive), before combining (folds)
PHOTO = "photo"  # the photo check's output: its line at 0.5 (evaluate.photo_threshold folded in)
PHOTO_SCORE = "photo_score"  # the column of PHOTO's score: the same number in data/oof, predict and /predict
PHOTO_LINE = 0.5  # a photo score below it: not like the photos the model learnt from
POOLED = "pooled_{}"  # the i-th average-pooling layer of a frozen extractor (valence.learn.features): its input is a feature map
LOGIT_MAP = "logit_map"  # the frozen release's P(Positive) logit cell by cell (valence.learn.heads.logit_map): it sums to the logit

# Views of an image in data/features: 0 the photo, 1 its mirror image (what flip averaging scores), 2 and up
# augmented copies (the heads train on the mean of train.frozen.views of them)
PHOTO_VIEW, MIRROR_VIEW = 0, 1


def views_scored(flip_average):
    """How many stored views an image is scored on: the photo and, with flip averaging, its mirror image."""
    return MIRROR_VIEW + 1 if flip_average else PHOTO_VIEW + 1


def predicted_column(rating):
    """The fold stages' column of a rating head's out-of-fold prediction: "predicted_valence"."""
    return f"predicted_{rating}"


def output_name(rating, scale):
    """The released model's output for ``rating`` names it and its scale: "valence_1_to_7" ("m" for minus)."""
    def number(value):
        return f"{value:g}".replace("-", "m").replace(".", "p")
    return f"{rating}_{number(scale[0])}_to_{number(scale[1])}"


def parse_output_name(name):
    """(rating, (low, high)) of an ``output_name``; None for any other output."""
    match = re.fullmatch(r"([a-z]+)_(m?[\dp]+)_to_(m?[\dp]+)", name)
    if not match:
        return None
    low, high = (float(part.replace("m", "-").replace("p", ".")) for part in match.groups()[1:])
    return match.group(1), (low, high)


def column_of(output):
    """The fold stages' predictions.csv column of a head's output: a rating's is ``predicted_column``, the photo
    check's PHOTO_SCORE, P(Positive)'s and the classifier's their own name."""
    rating = parse_output_name(output)
    return predicted_column(rating[0]) if rating else PHOTO_SCORE if output == PHOTO else output
