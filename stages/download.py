"""Stage 1: put the dataset archive in data/raw/.

    python -m stages.download        (run by `dvc repro` from the repository root)

download.source = url: $KERAS_HOME/datasets/<download.filename> if it exists (no network), else download.url.
download.source = demo: a generated archive of smiling vs frowning faces, for a run with no data at all.
download.source = path: nothing to fetch: unzip reads download.path (your folder or .zip) in place, and DVC
hashes it as unzip's input; this stage checks it is there and leaves data/raw empty.
"""
import shutil
from pathlib import Path

from valence import params
from valence.errors import PipelineError, run_stage
from valence.config import RAW as OUT_DIR


def main():
    p = params.load("download")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if p.source == "path":
        source = Path(p.path)
        if not (source.is_dir() and any(source.iterdir())) and not (source.is_file() and source.suffix.lower() == ".zip"):
            raise PipelineError(f"{source}: not a folder of photos or a .zip archive (download.path)")
        for old in OUT_DIR.iterdir():  # no stale archive beside your photos
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        print(f"unzip reads {source} in place")
        return
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
