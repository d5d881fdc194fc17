import matplotlib.figure
import numpy as np
import pytest
from PIL import Image

from valence.report import figures
from valence.report.evaluation import confusion

TRAIN_COLOUR, VAL_COLOUR = (31, 119, 180), (255, 127, 14)  # matplotlib's C0 and C1

rng = np.random.default_rng(0)
Y = rng.integers(0, 2, 30)
P = np.clip(0.4 * Y + rng.uniform(0, 0.6, 30), 0, 1)
HISTORY = [{"epoch": str(e), "phase": "head" if e < 3 else "fine_tune", "loss": str(0.7 - 0.1 * e),
            "accuracy": str(0.5 + 0.05 * e), "auc": str(0.6 + 0.05 * e), "val_loss": str(0.75 - 0.05 * e),
            "val_accuracy": str(0.5 + 0.03 * e), "val_auc": str(0.55 + 0.04 * e)} for e in range(1, 6)]
TRAIN_ONLY = [{k: v for k, v in row.items() if not k.startswith("val_")} for row in HISTORY]  # validation_size 0

PLOTS = {
    "roc": lambda path: figures.roc({"test": (Y, P), "train": (Y, Y)}, path),
    "precision_recall": lambda path: figures.precision_recall(Y, P, path),
    "confusion_matrix": lambda path: figures.confusion_matrix(confusion(Y, P, 0.5), path),
    "confusion_matrix_empty_row": lambda path: figures.confusion_matrix(np.array([[0, 0], [3, 5]]), path),
    "learning_curves": lambda path: figures.learning_curves(HISTORY, path),
    "learning_curves_train_only": lambda path: figures.learning_curves(TRAIN_ONLY, path),
}


def read_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return np.asarray(image.convert("RGB"))


def colour_pixels(pixels, colour, tol=12):
    return int((np.abs(pixels.astype(int) - colour).max(axis=-1) <= tol).sum())


@pytest.mark.parametrize("name", PLOTS)
def test_writes_real_png_atomically(tmp_path, name):
    path = tmp_path / "out" / f"{name}.png"  # the folder is created as needed
    PLOTS[name](path)
    pixels = read_png(path)
    height, width, _ = pixels.shape
    assert 200 <= width <= 2000 and 200 <= height <= 2000
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not a flat colour
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


@pytest.mark.parametrize("name", ["roc", "confusion_matrix", "learning_curves"])
def test_replaces_existing_file(tmp_path, name):
    path = tmp_path / f"{name}.png"
    path.write_bytes(b"old contents")
    PLOTS[name](path)
    read_png(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "roc.png"
    path.write_bytes(b"old contents")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"half a PNG")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        PLOTS["roc"](path)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_curves_are_drawn(tmp_path):
    PLOTS["roc"](tmp_path / "roc.png")
    assert colour_pixels(read_png(tmp_path / "roc.png"), TRAIN_COLOUR) > 100


@pytest.mark.parametrize("history, has_validation", [(HISTORY, True), (TRAIN_ONLY, False)])
def test_learning_curves_validation_lines(tmp_path, history, has_validation):
    path = tmp_path / "lc.png"
    figures.learning_curves(history, path)
    pixels = read_png(path)
    assert colour_pixels(pixels, TRAIN_COLOUR) > 100
    assert (colour_pixels(pixels, VAL_COLOUR) > 100) == has_validation


def test_learning_curves_mark_where_a_phase_starts(tmp_path):
    one_phase = [dict(row, phase="train") for row in HISTORY]
    figures.learning_curves(HISTORY, tmp_path / "two.png")
    figures.learning_curves(one_phase, tmp_path / "one.png")
    grey = (128, 128, 128)
    assert colour_pixels(read_png(tmp_path / "two.png"), grey, tol=4) > colour_pixels(read_png(tmp_path / "one.png"), grey, tol=4) + 50


def test_roc_draws_one_curve_per_name(tmp_path):
    figures.roc({"test": (Y, P)}, tmp_path / "one.png")
    PLOTS["roc"](tmp_path / "two.png")
    assert colour_pixels(read_png(tmp_path / "one.png"), VAL_COLOUR) < 20
    assert colour_pixels(read_png(tmp_path / "two.png"), VAL_COLOUR) > 100


def test_mistakes_sheet_shows_the_most_confident_mistakes(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(figures, "_thumbnail", lambda path, side=160: shown.append(path) or np.zeros((4, 4, 3), np.uint8))
    rows = ([{"path": f"neg{i}.jpg", "actual": "Negative", "predicted": "Positive" if p >= 0.5 else "Negative",
              "probability": p, "valence": "2.5"} for i, p in enumerate((0.9, 0.6, 0.55, 0.2))]
            + [{"path": f"pos{i}.jpg", "actual": "Positive", "predicted": "Positive" if p >= 0.5 else "Negative",
                "probability": p, "valence": ""} for i, p in enumerate((0.1, 0.45, 0.8))])
    figures.mistakes(rows, tmp_path / "mistakes.png", per_kind=2)
    assert shown == ["neg0.jpg", "neg1.jpg", "pos0.jpg", "pos1.jpg"]  # highest P(Positive) first, then lowest
    assert read_png(tmp_path / "mistakes.png").shape[1] > 100
    shown.clear()
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    figures.mistakes(rows, tmp_path / "with_maps.png", per_kind=2, pictures={"neg0.jpg": red})  # the stage's maps
    assert shown == ["neg1.jpg", "pos0.jpg", "pos1.jpg"]  # the picture given is drawn instead of the photo
    assert colour_pixels(read_png(tmp_path / "with_maps.png"), (255, 0, 0)) > 1000


def test_pair_and_mistake_sheets_without_anything_to_show_say_so(tmp_path):
    figures.image_pairs([], "near-duplicates", tmp_path / "pairs.png")
    figures.mistakes([{"path": "a.jpg", "actual": "Positive", "predicted": "Positive", "probability": 0.9}],
                      tmp_path / "mistakes.png")
    for name in ("pairs.png", "mistakes.png"):
        assert read_png(tmp_path / name).min() < 100  # the message is drawn, not a blank page


@pytest.fixture
def drawn_figure(monkeypatch):
    """The matplotlib figure a function would have saved, drawn so text extents are known."""
    kept = []

    def keep(figure, path):
        figure.tight_layout()
        figure.canvas.draw()
        kept.append(figure)

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def test_the_frozen_heads_candidates_are_drawn_against_c_on_a_log_axis_with_the_chosen_one_marked(drawn_figure):
    history = [{"epoch": i + 1, "phase": f"C={c:g}" + (" (chosen)" if c == 0.01 else ""), "C": c, "loss": 0.5,
                "accuracy": 0.8, "auc": 0.9, "val_loss": 0.6, "val_accuracy": 0.7, "val_auc": 0.8}
               for i, c in enumerate((0.001, 0.01, 0.1))]
    figures.learning_curves(history, "unused.png")
    for ax in drawn_figure[0].axes:
        assert ax.get_xscale() == "log" and "C" in ax.get_xlabel()
        lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
        assert lines["train (fit on all)"] == lines["validation (inner folds)"] == [0.001, 0.01, 0.1]
        assert lines["chosen C=0.01"] == [0.01, 0.01]  # a vertical line at the released head's C
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.01", "0.1"]


def test_epochs_stay_on_a_linear_axis_of_whole_numbers(drawn_figure):
    figures.learning_curves(HISTORY, "unused.png")
    for ax in drawn_figure[0].axes:
        assert ax.get_xscale() == "linear" and ax.get_xlabel() == "epoch"
        assert all(float(t).is_integer() for t in ax.get_xticks())


def test_a_long_title_of_the_pairs_sheet_fits_the_figure(drawn_figure, monkeypatch):
    monkeypatch.setattr(figures, "_thumbnail", lambda path, side=160: np.zeros((4, 4, 3), np.uint8))
    pair = {"paths": ["a.jpg", "b.jpg"], "labels": ["Positive", "Negative"], "distance": 3}
    figures.image_pairs([pair] * 3, "near-duplicates at ≤ 8 pHash bits from their representative (label conflicts first)",
                        "unused.png", limit=1)
    figure = drawn_figure[0]
    box = figure._suptitle.get_window_extent(figure.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height
    assert "(1 of 3)" in figure._suptitle.get_text()


def test_the_mistakes_sheet_is_a_grid_not_a_strip(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "_thumbnail", lambda path, side=160: np.zeros((4, 4, 3), np.uint8))
    rows = [{"path": f"{kind}{i}.jpg", "actual": actual, "predicted": predicted, "probability": p}
            for kind, actual, predicted, p in (("neg", "Negative", "Positive", 0.9), ("pos", "Positive", "Negative", 0.1))
            for i in range(8)]
    pictures = {r["path"]: np.zeros((8, 16, 3), np.uint8) for r in rows}  # the stage's photo beside its map
    figures.mistakes(rows, tmp_path / "mistakes.png", pictures=pictures)
    height, width, _ = read_png(tmp_path / "mistakes.png").shape
    assert width <= 1600 and 0.5 <= width / height <= 2, (width, height)  # 16 in 4 rows of 4: readable at page width
