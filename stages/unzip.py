"""Stage 2: extract the archive's labelled images and write the labels table.

    python -m stages.unzip

Reads the one archive in data/raw/ (refusing zip bombs and members that would land outside data/images/),
detects its layout (or uses unzip.layout) and extracts only the distinct images it labels into data/images/.
Writes data/labels.csv (path, label, valence, category), data/skipped.csv (files or CSV rows left out, with
the reason: undecodable, unrated, duplicate, label conflict, …) and metrics/data.json (counts).
"""
from pathlib import Path

from valence import params
from valence.data.layouts import LABEL_COLUMNS, build_image_set
from valence.errors import PipelineError, run_stage
from valence.files import atomic_dir, write_csv, write_json

RAW_DIR = Path("data/raw")
IMAGES_DIR = Path("data/images")


def main():
    p = params.load("unzip")
    archives = sorted(RAW_DIR.glob("*.zip"))
    if len(archives) != 1:
        raise PipelineError(f"{RAW_DIR}: expected exactly one .zip archive, found {len(archives)}; run the download stage")
    with atomic_dir(IMAGES_DIR) as tmp:
        rows, skipped, summary = build_image_set(archives[0], tmp, p.layout, p.valence_threshold, p.neutral_margin,
                                                 p.max_total_mb, p.max_compression_ratio)
    for row in rows:  # the images now live at their final place
        row["path"] = (IMAGES_DIR / Path(row["path"]).relative_to(tmp)).as_posix()
    write_csv("data/labels.csv", rows, LABEL_COLUMNS)
    write_csv("data/skipped.csv", [{"name": n, "reason": r} for n, r in skipped], ["name", "reason"])
    write_json("metrics/data.json", summary)
    for name, reason in skipped[:10]:
        print(f"skipped {name}: {reason}")
    if len(skipped) > 10:
        print(f"… and {len(skipped) - 10} more, listed in data/skipped.csv")
    print(", ".join(f"{k}: {v}" for k, v in summary.items()))


if __name__ == "__main__":
    run_stage(main)
