"""PNG renderings of the evaluation and training curves (DVC draws the same data interactively)."""
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from valence.config import PROBABILITY  # noqa: E402
from valence.data.labels import CLASSES  # noqa: E402
from valence.files import atomic_path  # noqa: E402


def _save(figure, path):
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)


def roc(curves, path):
    """ROC curves: ``curves`` maps a name to (0/1 truth, P(Positive)); the first is drawn bold, the rest thin."""
    from sklearn import metrics

    figure, ax = plt.subplots(figsize=(5, 5))
    for i, (name, (y_true, probability)) in enumerate(curves.items()):
        fpr, tpr, _ = metrics.roc_curve(y_true, probability)
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc(fpr, tpr):.3f})", linewidth=2.5 if i == 0 else 1)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(title="ROC curve", xlabel="false positive rate", ylabel="true positive rate",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save(figure, path)


def precision_recall(y_true, probability, path):
    """The Positive class's precision–recall curve against chance (the share of Positive)."""
    from sklearn import metrics

    precision, recall, _ = metrics.precision_recall_curve(y_true, probability)
    figure, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"model (AP {metrics.average_precision_score(y_true, probability):.3f})")
    ax.axhline(np.mean(y_true), linestyle="--", color="grey", label="chance (share of Positive)")
    ax.set(title="Precision–recall, Positive class (out-of-fold)", xlabel="recall", ylabel="precision",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    _save(figure, path)


def reliability(curves, path):
    """A reliability diagram: {legend label: valence.learn.calibration.reliability rows} as mean predicted
    against observed share of Positive per bin (the diagonal is perfect calibration), and below it the images per
    bin. The caller names each curve, with its ECE: figures draw, metrics are computed where they are reported."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for (name, rows), marker in zip(curves.items(), "os^"):
        predicted, observed = [r["predicted"] for r in rows], [r["observed"] for r in rows]
        top.plot(predicted, observed, marker=marker, label=name)
        bottom.plot(predicted, [r["images"] for r in rows], marker=marker)
    top.set(title="Reliability (out-of-fold, 10 bins of P(Positive))", ylabel="share actually Positive",
            xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.set(xlabel="mean predicted P(Positive) in the bin", ylabel="images")
    _save(figure, path)


def confusion_matrix(matrix, path):
    """Counts and row-normalised rates side by side."""
    matrix = np.asarray(matrix)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, values, title, fmt in ((axes[0], matrix, "counts", "{:d}"), (axes[1], normalised, "normalised", "{:.2f}")):
        ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, fmt.format(value.item()), ha="center", va="center",
                    color="white" if normalised[i, j] > 0.5 else "black")
        ax.set(title=f"Confusion matrix ({title})", xlabel="predicted", ylabel="actual",
               xticks=range(len(CLASSES)), yticks=range(len(CLASSES)), xticklabels=CLASSES, yticklabels=CLASSES)
    _save(figure, path)


def learning_curves(history, path):
    """Loss, accuracy and AUC, train vs validation: per epoch, a dotted line where a new phase starts; or, for
    the frozen head's C candidates (rows with "C"), against C on a log axis with the chosen C marked."""
    metrics = [m for m in ("loss", "accuracy", "auc") if history and history[0].get(m) not in (None, "")]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    by_c = bool(history) and "C" in history[0]
    x = [float(row["C"]) if by_c else int(row["epoch"]) for row in history]
    starts = [] if by_c else [row for before, row in zip(history, history[1:]) if row.get("phase") != before.get("phase")]
    chosen = [float(row["C"]) for row in history if by_c and "chosen" in row.get("phase", "")]
    for ax, metric in zip(axes[0], metrics):
        for prefix, label in (("", "train (fit on all)" if by_c else "train"),
                              ("val_", "validation (inner folds)" if by_c else "validation")):
            if history[0].get(prefix + metric) not in (None, ""):
                ax.plot(x, [float(row[prefix + metric]) for row in history], marker="o", label=label)
        for row in starts:
            ax.axvline(int(row["epoch"]) - 0.5, linestyle=":", color="grey")
            ax.annotate(row["phase"], (int(row["epoch"]) - 0.5, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", color="grey")
        for c in chosen:
            ax.axvline(c, linestyle="--", color="grey", label=f"chosen C={c:g}")
        if by_c:
            ax.set_xscale("log")
            ax.set_xticks(x, [f"{c:g}" for c in x])
            ax.minorticks_off()
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.set(title=f"{metric} against C (frozen head)" if by_c else f"{metric} per epoch",
               xlabel="C (inverse L2 strength)" if by_c else "epoch", ylabel=metric)
        ax.legend()
    _save(figure, path)


def _thumbnail(path, side=160):
    from valence.data.images import decode

    try:
        image = decode(path)
    except ValueError:
        return np.full((side, side, 3), 200, dtype=np.uint8)  # an unreadable file shows as a grey square
    image.thumbnail((side, side))
    return np.asarray(image)


def _no_images(title, message, path):
    figure, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.4, message, ha="center", va="center")
    _save(figure, path)


def image_pairs(pairs, title, path, limit=12, total=None):
    """A contact sheet of image pairs, one pair a row: ``pairs`` of {paths, labels, distance}, the first
    ``limit`` of ``total`` (default: of len(pairs))."""
    total = len(pairs) if total is None else total
    if not pairs:
        return _no_images(title, "none found", path)
    shown = pairs[:limit]
    figure, axes = plt.subplots(len(shown), 2, figsize=(6, 2.6 * len(shown)), squeeze=False)
    for row, pair in zip(axes, shown):
        for ax, image_path, label in zip(row, pair["paths"], pair["labels"]):
            ax.imshow(_thumbnail(image_path))
            ax.set_title(f"{image_path.rsplit('/', 1)[-1]}\n{label}, {pair['distance']} bits apart", fontsize=8)
            ax.axis("off")
    title += f" ({len(shown)} of {total})" if total > len(shown) else ""
    figure.suptitle(textwrap.fill(title, 60))  # wrapped to the figure's width: a long title was cut at both sides
    _save(figure, path)


def worst_mistakes(rows, per_kind=8):
    """{"false positive": rows, "false negative": rows}: the most confident mistakes among ``rows`` of {path,
    actual, predicted, probability}; false positives (actually Negative) highest P(Positive) first, false
    negatives lowest first."""
    return {"false positive": sorted((r for r in rows if r["actual"] == CLASSES[0] and r["predicted"] == CLASSES[1]),
                                     key=lambda r: -r[PROBABILITY])[:per_kind],
            "false negative": sorted((r for r in rows if r["actual"] == CLASSES[1] and r["predicted"] == CLASSES[0]),
                                     key=lambda r: r[PROBABILITY])[:per_kind]}


def mistakes(rows, path, per_kind=8, pictures=None, columns=4,
             legend="red pushes toward Positive, blue toward Negative"):
    """``worst_mistakes`` of ``rows`` (with valence where rated) as a grid, ``columns`` a row. ``pictures``:
    {path: uint8 image} to draw instead of the photo (the mistakes stage: the photo beside its map,
    valence.use.explain, whose colours ``legend`` explains)."""
    wrong = worst_mistakes(rows, per_kind)
    title = "Most confident mistakes (out-of-fold P(Positive))"
    if pictures:
        title += f"\nbeside each, the released model's map: {legend}"
    if not any(wrong.values()):
        return _no_images(title, "no mistakes", path)
    # a grid, each kind starting a row of its own: a strip of 16 was 3200 px wide, unreadable at page width
    lines = [(kind, items[i:i + columns]) for kind, items in wrong.items() for i in range(0, len(items), columns)]
    width, height = (4.0, 2.3) if pictures else (2.4, 2.8)
    figure, axes = plt.subplots(len(lines), columns, figsize=(width * columns, height * len(lines) + 0.6),
                                squeeze=False)
    for row, (kind, items) in zip(axes, lines):
        for i, ax in enumerate(row):
            ax.axis("off")
            if i < len(items):
                r = items[i]
                valence = f", valence {float(r['valence']):.2f}" if r.get("valence") not in (None, "") else ""
                ax.imshow(pictures[r["path"]] if pictures and r["path"] in pictures else _thumbnail(r["path"]))
                ax.set_title(f"{kind}: {r['path'].rsplit('/', 1)[-1]}\nP(Positive) {r['probability']:.2f}{valence}",
                             fontsize=9)
    figure.suptitle(title)
    _save(figure, path)
