"""Stage 2: extract the labelled images and write the labels table.

    python -m stages.unzip

Reads download.path: the one archive in data/raw/, or your own folder or .zip (download.source path). An
archive is checked first (zip bombs, members that would land outside data/images/); a folder is read in place.
Detects the layout (or uses unzip.layout) and puts only the distinct images it labels into data/images/
(extracted from an archive, hard-linked from a folder).
Writes data/labels.csv (path, label, the valence and arousal ratings where the data has them, category, group), data/skipped.csv (files or CSV rows left out, with
the reason: undecodable, unrated, duplicate, label conflict, …) and metrics/data.json (counts).
"""
from pathlib import Path

from valence import config, params
from valence.data.layouts import LABEL_COLUMNS, build_image_set
from valence.errors import run_stage
from valence.files import atomic_dir, write_csv, write_json

IMAGES_DIR = config.IMAGES


def main():
    p = params.load("unzip")
    source = params.load("download").path
    with atomic_dir(IMAGES_DIR) as tmp:
        rows, skipped, summary = build_image_set(source, tmp, p.layout, p.valence_threshold, p.neutral_margin,
                                                 p.max_total_mb, p.max_compression_ratio, p.rating_column,
                                                 p.arousal_column)
    for row in rows:  # the images now live at their final place
        row["path"] = (IMAGES_DIR / Path(row["path"]).relative_to(tmp)).as_posix()
    write_csv(config.LABELS, rows, LABEL_COLUMNS)
    write_csv(config.SKIPPED, [{"name": n, "reason": r} for n, r in skipped], ["name", "reason"])
    write_json(config.DATA_METRICS, summary)
    for name, reason in skipped[:10]:
        print(f"skipped {name}: {reason}")
    if len(skipped) > 10:
        print(f"… and {len(skipped) - 10} more, listed in data/skipped.csv")
    print(", ".join(f"{k}: {v}" for k, v in summary.items()))


if __name__ == "__main__":
    run_stage(main)
