"""`kill -9` in the middle of download, unzip and train, then a plain `dvc repro`: it must finish with no clean-up.

The archive comes from a local HTTP server (never the network) that can stall half-way, so the download is
killed mid-transfer for certain; unzip and train are killed once their temporary output or their process is
seen. After each kill the next `dvc repro` must simply work.
"""
import io
import os
import signal
import subprocess
import time
import zipfile

import numpy as np
import psutil
import pytest
from PIL import Image

from helpers import DVC, ArchiveServer, archive_server, make_project, run

pytestmark = pytest.mark.slow  # real `dvc repro` runs killed mid-stage: minutes

IMAGES_PER_CLASS = 40


def slow_to_unzip_archive():
    """Class folders of 2000×1500 photos: each takes milliseconds to decode, so unzip lasts long enough to kill."""
    buf, rng = io.BytesIO(), np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as zf:
        for label, base in (("Negative", 40), ("Positive", 200)):
            for i in range(IMAGES_PER_CLASS):
                small = np.clip(base + rng.normal(0, 30, (15, 20, 3)), 0, 255).astype("uint8")
                photo = io.BytesIO()
                Image.fromarray(small).resize((2000, 1500)).save(photo, "JPEG", quality=80)
                zf.writestr(f"set/{label}/{i:03d}.jpg", photo.getvalue())
    return buf.getvalue()


@pytest.fixture
def server():
    with archive_server(slow_to_unzip_archive(), mode="stall") as url:
        yield url


def stage_running(repro, stage):
    """Whether `python -m stages.<stage>` runs under the ``repro`` process."""
    try:
        children = psutil.Process(repro.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if f"stages.{stage}" in " ".join(child.cmdline()):  # python -m stages.<stage>
                return True
        except psutil.NoSuchProcess:
            pass
    return False


def kill_repro_when(work, env, ready, timeout=120):
    """Start `dvc repro`, wait until ``ready()``, then SIGKILL dvc and the stage it runs, all at once."""
    repro = subprocess.Popen(DVC + ["repro"], cwd=work, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready(repro):
        assert repro.poll() is None, "dvc repro ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting to kill dvc repro"
        time.sleep(0.005)
    os.killpg(repro.pid, signal.SIGKILL)
    repro.wait()
    assert repro.returncode == -signal.SIGKILL


def temporaries(work):
    return sorted(p.relative_to(work).as_posix() for p in work.rglob(".*.tmp")) + \
        sorted(p.relative_to(work).as_posix() for p in (work / "models").glob(".model.keras.*"))


def test_kill_9_during_download_unzip_and_train_then_repro_recovers(tmp_path, server):
    work = tmp_path
    env = make_project(work, dict(url=server, filename="archive.zip"), dict(epochs=300))

    # 1. download: killed with half the archive in its temporary file (the server stalls after half)
    kill_repro_when(work, env, lambda repro: ArchiveServer.half_sent.is_set() and list((work / "data/raw").glob(".*.tmp")))
    assert [p.name for p in (work / "data/raw").iterdir()][0].startswith(".archive.zip.")
    ArchiveServer.mode = "full"
    ArchiveServer.release.set()

    # 2. unzip: killed while it extracts into its temporary folder
    kill_repro_when(work, env, lambda repro: stage_running(repro, "unzip") and list((work / "data").glob(".images.*.tmp/*/*")))
    assert list((work / "data").glob(".images.*.tmp")) and not (work / "data/labels.csv").exists()

    # 3. training (a fold's or the release's, whichever DVC runs first): killed a few seconds into 300 epochs
    started = []
    kill_repro_when(work, env, lambda repro: (stage_running(repro, "fold") or stage_running(repro, "train")) and (
        started.append(time.monotonic()) or time.monotonic() - started[0] > 8))
    assert (work / "data/split/folds.csv").exists() and not (work / "models/model.keras").exists()
    assert not list((work / "data/oof").glob("*/predictions.csv")) if (work / "data/oof").exists() else True

    # 4. nothing but `dvc repro`; train again, but briefly
    params = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(params.replace("epochs: 300", "epochs: 2"))
    output = run(DVC + ["repro"], work, env)
    assert "Running stage 'evaluate'" in output
    assert temporaries(work) == []  # what the killed runs left behind is gone
    assert sorted(p.name for p in (work / "data/raw").iterdir()) == ["archive.zip"]
    assert len(list((work / "data/images").rglob("*.jpg"))) == 2 * IMAGES_PER_CLASS
    assert "up to date" in run(DVC + ["status"], work, env)


def test_a_failed_stage_under_dvc_repro_leaves_no_output_and_dvc_checkout_restores_it(tmp_path):
    """docs/guide.md, Troubleshooting: `dvc repro` removes a stage's outputs before running it (none is `persist`), so
    a stage that fails leaves nothing — no half-written file, and not the previous one either — and
    `dvc checkout` brings back the last run's outputs from DVC's cache."""
    work = tmp_path
    env = make_project(work, dict(source="demo", demo_images_per_class=3, demo_height=20, demo_width=20), {})
    run(DVC + ["repro", "download"], work, env)
    archive = work / "data/raw/demo.zip"
    before = archive.read_bytes()

    params = (work / "params.yaml").read_text()
    unreachable = "http://127.0.0.1:9/archive.zip"  # the discard port: nothing listens, nothing leaves the machine
    (work / "params.yaml").write_text(params.replace("source: demo", "source: url").replace(
        "url: https://github.com/bkurdi/shiny-server/archive/1a3bcada01115bbe651bf0e69f7410c8ef63cc94.zip",
        f"url: {unreachable}"))
    failed = subprocess.run(DVC + ["repro", "download"], cwd=work, env=env, capture_output=True, text=True)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot download {unreachable}")
    assert not archive.exists() and temporaries(work) == []  # removed by DVC, nothing half-written left

    run(DVC + ["checkout", "download"], work, env)
    assert archive.read_bytes() == before
