"""The real OASIS copy in ../shared (CI has it): download from Keras' cache, then unzip with every quirk."""
import hashlib
from pathlib import Path

import pytest

from helpers import OASIS_ARCHIVE as ARCHIVE, require_shared
from valence.data.download import fetch
from valence.data.layouts import build_image_set


pytestmark = pytest.mark.slow  # the real 66 MB archive


@pytest.fixture(scope="module")
def oasis(tmp_path_factory):
    require_shared(ARCHIVE, check="the OASIS counts behind the headline (tests/test_oasis.py)")
    work = tmp_path_factory.mktemp("oasis")
    (work / "keras/datasets").mkdir(parents=True)
    (work / "keras/datasets" / ARCHIVE.name).symlink_to(ARCHIVE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(work / "keras"))
        archive = fetch("http://127.0.0.1:9/unreachable.zip", ARCHIVE.name, work / "raw")
    return work, archive, *build_image_set(archive, work / "images")


def test_download_uses_the_keras_cache_copy(oasis):
    _, archive, *_ = oasis
    assert archive.read_bytes() == ARCHIVE.read_bytes()


def test_labels_follow_the_documented_counts(oasis):
    _, _, rows, skipped, summary = oasis
    # ../shared/README.md: 471 above the neutral point 4, 246 below, 3 exactly 4.0
    assert (summary["Positive"], summary["Negative"], summary["neutral_dropped"]) == (471, 246, 3)
    assert skipped == [] and summary["images"] == len(rows) == 717
    # the copy behind the committed numbers: 720 of upstream's 900 images (metrics/data.json tells them apart)
    assert summary["archive"] == {"sha256": hashlib.sha256(ARCHIVE.read_bytes()).hexdigest(), "images": 720}
    assert all(float(r["valence"]) > 4 for r in rows if r["label"] == "Positive")


def test_quirky_rows_are_kept(oasis):
    work, _, rows, _, _ = oasis
    names = {Path(r["path"]).name for r in rows}
    assert {"Crosswalk 1.jpg", "War 2.jpg", "Monkey 3.jpg"} <= names  # trailing-space themes; PNG named .jpg
    assert all(Path(r["path"]).is_relative_to(work / "images") for r in rows)

