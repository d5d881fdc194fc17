"""Stage 1: put the dataset archive in data/raw/.

    python -m stages.download        (run by `dvc repro` from the repository root)

download.source = url: $KERAS_HOME/datasets/<download.filename> if it exists (no network), else download.url.
download.source = demo: a generated archive of smiling vs frowning faces, for a run with no data at all.
"""
import shutil
from pathlib import Path

from valence import params
from valence.errors import run_stage

OUT_DIR = Path("data/raw")


def main():
    p = params.load("download")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if p.source == "demo":
        from valence.data.demo_faces import write_demo_archive

        out = OUT_DIR / "demo.zip"
        write_demo_archive(out, p.demo_images_per_class, p.demo_height, p.demo_width, p.demo_seed)
    else:
        from valence.data.download import fetch

        out = fetch(p.url, p.filename, OUT_DIR, p.sha256)
    for other in OUT_DIR.iterdir():  # one archive at a time (unzip reads it); old ones go only after success
        if other != out:
            shutil.rmtree(other) if other.is_dir() else other.unlink()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    run_stage(main)
