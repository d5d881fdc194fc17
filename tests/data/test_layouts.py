import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_garbage_bytes, make_jpeg_bytes, make_oasis_zip, make_png_bytes, write_zip
from valence.data.labels import targets
from valence.data.layouts import build_image_set, concept_of, label_from_valence
from valence.errors import PipelineError

TOP = "shiny-server-abc"
CSV = f"{TOP}/OASIS.csv"
# (theme as in the CSV, category, valence, image file name or None); images are all 8×6.
OASIS_ROWS = [
    ("Acorns 1", "Object", "4.68627451", "Acorns 1.jpg"),
    ("War 2 ", "Scene", "1.5", "War 2.jpg"),          # trailing space in the CSV only
    ("Monkey 3", "Animal", "5.5", "Monkey 3.jpg"),     # an RGBA PNG named .jpg
    ("Neutral 1", "Object", "4.0", "Neutral 1.jpg"),   # exactly at the threshold: dropped
    ("Near 1", "Object", "4.25", "Near 1.jpg"),
    ("Low 1", "Person", "3.75", "Low 1.jpg"),
    ("Missing 1", "Object", "2.0", None),              # CSV row with no image
    ("Bad 1", "Object", "n/a", "Bad 1.jpg"),           # valence not a number (its image is not an orphan)
    ("Broken 1", "Object", "6.0", "Broken 1.jpg"),     # random bytes named .jpg
    ("Cut 1", "Object", "2.5", "Cut 1.jpg"),           # a JPEG cut in half
]
LINE = {row[0].strip(): line for line, row in enumerate(OASIS_ROWS, start=2)}


def oasis_images():
    images = {name: make_jpeg_bytes(8, 6, (20 * i, 100, 200)) for i, (*_, name) in enumerate(OASIS_ROWS) if name}
    images["Monkey 3.jpg"] = make_png_bytes(mode="RGBA")
    images["Broken 1.jpg"] = make_garbage_bytes()
    images["Cut 1.jpg"] = make_jpeg_bytes(64, 48)[:300]
    images["Orphan 1.jpg"] = make_jpeg_bytes()                # image with no CSV row
    return images


@pytest.fixture
def oasis_zip(tmp_path):
    return make_oasis_zip(tmp_path / "oasis.zip", [r[:3] for r in OASIS_ROWS], oasis_images())


def files_under(folder):
    return sorted(p.as_posix() for p in Path(folder).rglob("*") if p.is_file())


def check_consistent(rows, skipped, summary, images_dir):
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    assert files_under(images_dir) == sorted(r["path"] for r in rows)  # exactly the usable images, nothing else
    assert summary["images"] == len(rows) == summary["Positive"] + summary["Negative"]
    assert summary["Positive"] == sum(r["label"] == "Positive" for r in rows)
    assert summary["skipped"] == len(skipped)
    for row in rows:
        assert Image.open(row["path"]).size == (8, 6)


def test_oasis_layout(tmp_path, oasis_zip):
    images_dir = tmp_path / "images"
    rows, skipped, summary = build_image_set(oasis_zip, images_dir)
    check_consistent(rows, skipped, summary, images_dir)
    under = (images_dir / "images").as_posix()  # top folder stripped, images/ kept
    assert all(r["arousal"] == 3.5 for r in rows)  # OASIS' Arousal_mean, read beside the valence
    assert {(r["path"], r["label"], r["valence"], r["category"], r["group"]) for r in rows} == {
        (f"{under}/Acorns 1.jpg", "Positive", 4.68627451, "Object", "Acorns"),
        (f"{under}/War 2.jpg", "Negative", 1.5, "Scene", "War"),
        (f"{under}/Monkey 3.jpg", "Positive", 5.5, "Animal", "Monkey"),
        (f"{under}/Near 1.jpg", "Positive", 4.25, "Object", "Near"),
        (f"{under}/Low 1.jpg", "Negative", 3.75, "Person", "Low"),
    }
    # the archive as a whole: its 10 image files (unrated, broken and junk ones too) and its bytes' sha256
    assert summary.pop("archive") == {"sha256": hashlib.sha256(oasis_zip.read_bytes()).hexdigest(), "images": 10}
    assert summary == {"images": 5, "Negative": 2, "Positive": 3, "groups": 5, "neutral_dropped": 1, "skipped": 5}
    reasons = dict(skipped)
    assert reasons.keys() == {f"{CSV}:{LINE['Missing 1']}", f"{CSV}:{LINE['Bad 1']}", f"{TOP}/images/Broken 1.jpg",
                              f"{TOP}/images/Cut 1.jpg", f"{TOP}/images/Orphan 1.jpg"}
    assert "no image" in reasons[f"{CSV}:{LINE['Missing 1']}"] and "Missing 1" in reasons[f"{CSV}:{LINE['Missing 1']}"]
    assert "'n/a' is not a number" in reasons[f"{CSV}:{LINE['Bad 1']}"]
    assert reasons[f"{TOP}/images/Orphan 1.jpg"] == "image has no CSV row"
    # The PNG-named-.jpg is extracted byte for byte; decoding copes with it.
    assert Path(under, "Monkey 3.jpg").read_bytes() == oasis_images()["Monkey 3.jpg"]
    assert not (images_dir / TOP).exists() and not (images_dir / "server.R").exists()


@pytest.mark.parametrize("threshold, margin, positive, negative, neutral", [
    (4.0, 0.25, {"Acorns 1", "Monkey 3"}, {"War 2"}, 3),  # 4.25 and 3.75 sit exactly on the margin
    (4.0, 0.125, {"Acorns 1", "Monkey 3", "Near 1"}, {"War 2", "Low 1"}, 1),
    (4.0, 0.75, {"Monkey 3"}, {"War 2"}, 4),
    (5.0, 0.0, {"Monkey 3"}, {"Acorns 1", "War 2", "Neutral 1", "Near 1", "Low 1"}, 0),
    (1.0, 0.0, {"Acorns 1", "War 2", "Monkey 3", "Neutral 1", "Near 1", "Low 1"}, set(), 0),
])
def test_oasis_threshold_and_margin(tmp_path, oasis_zip, threshold, margin, positive, negative, neutral):
    images_dir = tmp_path / "images"
    rows, skipped, summary = build_image_set(oasis_zip, images_dir, threshold=threshold, margin=margin)
    check_consistent(rows, skipped, summary, images_dir)
    by_label = {c: {Path(r["path"]).stem for r in rows if r["label"] == c} for c in ("Positive", "Negative")}
    assert by_label == {"Positive": positive, "Negative": negative}
    assert summary["neutral_dropped"] == neutral


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_oasis_other_line_ends_and_forced_layout(tmp_path, line_end):
    rows_in = [("A 1", "Object", "6.1"), ("B 1 ", "Object", "1.2")]
    images = {"A 1.jpg": make_jpeg_bytes(colour=(250, 250, 0)), "B 1.jpg": make_jpeg_bytes(colour=(0, 0, 90))}
    path = make_oasis_zip(tmp_path / "o.zip", rows_in, images, line_end=line_end)
    rows, skipped, summary = build_image_set(path, tmp_path / "img", layout="rated_csv")
    assert [(Path(r["path"]).name, r["label"]) for r in rows] == [("A 1.jpg", "Positive"), ("B 1.jpg", "Negative")]
    assert skipped == []


@pytest.mark.parametrize("valence", ["", "NA", "abc", "NaN", "inf"])
def test_oasis_unusable_valence_is_skipped(tmp_path, valence):
    rows_in = [("A 1", "Object", "6.1"), ("B 1", "Object", "1.2"), ("C 1", "Object", valence)]
    images = {name: make_jpeg_bytes(colour=(i * 90, 50, 50)) for i, name in enumerate(("A 1.jpg", "B 1.jpg", "C 1.jpg"))}
    rows, skipped, summary = build_image_set(make_oasis_zip(tmp_path / "o.zip", rows_in, images), tmp_path / "img")
    assert [Path(r["path"]).name for r in rows] == ["A 1.jpg", "B 1.jpg"] and summary["neutral_dropped"] == 0
    assert (f"{CSV}:4", f"Valence_mean {valence!r} is not a number") in skipped


CLASS_MEMBERS = {
    "dataset 50:50/": b"",
    "dataset 50:50/Negative/": b"",
    "dataset 50:50/Negative/a b.jpg": make_jpeg_bytes(8, 6, (10, 10, 10)),
    "dataset 50:50/Negative/e f.png": make_png_bytes(mode="L", width=8, height=6),
    "dataset 50:50/Positive/c d.jpg": make_jpeg_bytes(8, 6, (250, 250, 250)),
    "dataset 50:50/Positive/g h.JPEG": make_jpeg_bytes(8, 6, (250, 200, 0)),
    "dataset 50:50/Positive/notes.txt": b"not an image",
    "dataset 50:50/Positive/broken.jpg": make_garbage_bytes(seed=1),
    "dataset 50:50/readme.md": b"ignored: not in a class folder",
    "dataset 50:50/__MACOSX/Positive/._c d.jpg": b"\x00\x05\x16\x07",
    "dataset 50:50/Positive/._c d.jpg": b"\x00\x05\x16\x07",
}


@pytest.mark.parametrize("layout", ["auto", "class_folders"])
def test_class_folders(tmp_path, layout):
    path = write_zip(tmp_path / "seed.zip", CLASS_MEMBERS)
    images_dir = tmp_path / "images"
    rows, skipped, summary = build_image_set(path, images_dir, layout=layout)
    check_consistent(rows, skipped, summary, images_dir)
    base = images_dir.as_posix()
    assert rows == [{"path": f"{base}/Negative/a b.jpg", "label": "Negative", "valence": "", "arousal": "", "category": "",
                     "group": "Negative/a b"},
                    {"path": f"{base}/Negative/e f.png", "label": "Negative", "valence": "", "arousal": "", "category": "",
                     "group": "Negative/e f"},
                    {"path": f"{base}/Positive/c d.jpg", "label": "Positive", "valence": "", "arousal": "", "category": "",
                     "group": "Positive/c d"},
                    {"path": f"{base}/Positive/g h.JPEG", "label": "Positive", "valence": "", "arousal": "", "category": "",
                     "group": "Positive/g h"}]
    assert [name for name, _ in skipped] == ["dataset 50:50/Positive/broken.jpg", "dataset 50:50/Positive/notes.txt"]
    assert dict(skipped)["dataset 50:50/Positive/notes.txt"] == "not an image file"
    assert summary.pop("archive") == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "images": 5}
    assert summary == {"images": 4, "Negative": 2, "Positive": 2, "groups": 4, "neutral_dropped": 0, "skipped": 2}


def test_class_folders_without_top_folder(tmp_path):
    path = write_zip(tmp_path / "flat.zip", {"negative/x.jpg": make_jpeg_bytes(colour=(0, 0, 0)), "POSITIVE/y.jpg": make_jpeg_bytes()})
    rows, _, _ = build_image_set(path, tmp_path / "img")
    assert [(r["path"], r["label"]) for r in rows] == [((tmp_path / "img/POSITIVE/y.jpg").as_posix(), "Positive"),
                                                       ((tmp_path / "img/negative/x.jpg").as_posix(), "Negative")]


@pytest.mark.parametrize("members, layout, message", [
    ({"stuff/readme.txt": b"hi", "stuff/pic.jpg": make_jpeg_bytes()}, "auto", "cannot tell the layout"),
    ({"t/data.csv": b"Theme,Valence\rA,5\r", "t/images/A.jpg": make_jpeg_bytes()}, "auto", "cannot tell the layout"),
    (CLASS_MEMBERS, "rated_csv", "expected one rated CSV, found none"),
    ({}, "auto", "holds no files"),
    ({"top/": b"", "top/__MACOSX/._x.csv": b"x"}, "auto", "holds no files"),
    ({"d/Negative/a.jpg": make_garbage_bytes(), "d/Positive/b.jpg": b""}, "auto", "no usable labelled images"),
])
def test_unusable_archives(tmp_path, members, layout, message):
    path = write_zip(tmp_path / "a.zip", members)
    with pytest.raises(PipelineError, match=message) as err:
        build_image_set(path, tmp_path / "img", layout=layout)
    assert str(path) in str(err.value)


def test_rated_csv_that_is_not_utf8_is_a_one_line_error(tmp_path):
    members = {"t/OASIS.csv": ",Theme,Category,Valence_mean\r0,Caf\xe9 1,Object,5.5\r".encode("latin-1"),
               "t/images/Caf\xe9 1.jpg": make_jpeg_bytes()}
    path = write_zip(tmp_path / "a.zip", members)
    with pytest.raises(PipelineError, match=r"t/OASIS.csv is not UTF-8 text \(byte 34\)") as err:
        build_image_set(path, tmp_path / "img")
    assert str(path) in str(err.value) and not (tmp_path / "img").exists()


@pytest.mark.parametrize("evil", ["../evil.jpg", "d/Positive/../../../evil.jpg", "/tmp/evil.jpg"])
def test_escaping_member_writes_nothing(tmp_path, evil):
    work = tmp_path / "work"
    work.mkdir()
    path = write_zip(tmp_path / "evil.zip", {"d/Negative/a.jpg": make_jpeg_bytes(), evil: make_jpeg_bytes()})
    with pytest.raises(PipelineError, match="archive member"):
        build_image_set(path, work / "img")
    assert list(work.iterdir()) == [] and not (tmp_path / "evil.jpg").exists()


def test_not_a_zip(tmp_path):
    path = tmp_path / "oasis.zip"
    path.write_text("<html><body>rate limited</body></html>")
    with pytest.raises(PipelineError, match="not a readable zip"):
        build_image_set(path, tmp_path / "img")


@pytest.mark.parametrize("valence, threshold, margin, label", [
    (4.0, 4.0, 0.0, None), (4.0001, 4.0, 0.0, "Positive"), (3.9999, 4.0, 0.0, "Negative"),
    (4.5, 4.0, 0.5, None), (3.5, 4.0, 0.5, None), (4.51, 4.0, 0.5, "Positive"), (3.49, 4.0, 0.5, "Negative"),
    (7.0, 4.0, 0.0, "Positive"), (1.0, 4.0, 0.0, "Negative"), (4.0, 3.0, 0.0, "Positive"), (4.0, 5.0, 0.0, "Negative"),
])
def test_label_from_valence(valence, threshold, margin, label):
    assert label_from_valence(valence, threshold, margin) == label


def test_targets():
    t = targets([{"label": "Positive"}, {"label": "Negative"}, {"label": "Positive"}])
    assert t.dtype == np.float32 and t.tolist() == [1.0, 0.0, 1.0]
    assert targets([]).shape == (0,)
    with pytest.raises(ValueError):
        targets([{"label": "Neutral"}])


@pytest.mark.parametrize("theme, concept", [
    ("Dog 3", "Dog"), ("Crosswalk 1 ", "Crosswalk"), ("Car crash 12", "Car crash"), ("Fire", "Fire"),
    ("Dog 3b", "Dog 3b"), ("7", "7"),
])
def test_concept_is_the_theme_without_its_number(theme, concept):
    assert concept_of(theme) == concept


def photo_folder(folder, names):
    """A folder of small JPEGs at ``names`` (relative paths), each a different colour; returns the folder."""
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(make_jpeg_bytes(8, 6, (25 * i % 256, 90, 160)))
    return folder


def test_a_folder_of_class_folders_is_read_in_place(tmp_path):
    folder = photo_folder(tmp_path / "my photos", ["Negative/a.jpg", "negative/b.jpg", "Positive/c d.jpg",
                                                   "Positive/notes.txt"])
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    rows, skipped, summary = build_image_set(folder, tmp_path / "images")
    check_consistent(rows, skipped, summary, tmp_path / "images")
    assert [(Path(r["path"]).relative_to(tmp_path / "images").as_posix(), r["label"], r["group"]) for r in rows] == [
        ("Negative/a.jpg", "Negative", "Negative/a"), ("Positive/c d.jpg", "Positive", "Positive/c d"),
        ("negative/b.jpg", "Negative", "negative/b")]
    assert skipped == [("Positive/notes.txt", "not an image file")]
    assert summary["folder"] == {"path": str(folder), "images": 3}
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # nothing moved or changed


LABELS_CSV = """path,label,group,photographer
Negative/a.jpg,Negative,dog,ann
x/b.jpg, positive ,dog,bo
c.jpg,POSITIVE,,cy
gone.jpg,Negative,,dee
"""


@pytest.mark.parametrize("where", ["folder", "archive"])
def test_a_labels_csv_gives_labels_and_groups_and_ignores_other_columns(tmp_path, where):
    names = ["Negative/a.jpg", "x/b.jpg", "c.jpg", "unlisted.jpg"]
    folder = photo_folder(tmp_path / "photos", names)
    (folder / "labels.csv").write_text(LABELS_CSV)
    source = folder
    if where == "archive":  # the same files under a top folder of a zip: paths stay relative to the CSV
        source = write_zip(tmp_path / "photos.zip", {f"top/{p.relative_to(folder).as_posix()}": p.read_bytes()
                                                      for p in folder.rglob("*") if p.is_file()})
    rows, skipped, summary = build_image_set(source, tmp_path / "images")
    check_consistent(rows, skipped, summary, tmp_path / "images")
    got = {Path(r["path"]).relative_to(tmp_path / "images").as_posix(): (r["label"], r["group"]) for r in rows}
    assert got == {"Negative/a.jpg": ("Negative", "dog"), "x/b.jpg": ("Positive", "dog"), "c.jpg": ("Positive", "c")}
    top = "top/" if where == "archive" else ""
    assert sorted(skipped) == [(f"{top}labels.csv:5", f"no file {top}gone.jpg"),
                               (f"{top}unlisted.jpg", "image not in the labels CSV")]
    assert summary["groups"] == 2


def test_a_rating_column_labels_through_the_threshold_and_margin(tmp_path):
    folder = photo_folder(tmp_path / "photos", [f"{i}.jpg" for i in range(5)])
    (folder / "labels.csv").write_text("path,score\n0.jpg,1\n1.jpg,4.9\n2.jpg,5.0\n3.jpg,5.5\n4.jpg,9.5\n")
    rows, skipped, summary = build_image_set(folder, tmp_path / "images", threshold=5.0, margin=0.2,
                                             rating_column="score")
    assert [(Path(r["path"]).name, r["label"], r["valence"]) for r in rows] == [
        ("0.jpg", "Negative", 1.0), ("3.jpg", "Positive", 5.5), ("4.jpg", "Positive", 9.5)]
    assert summary["neutral_dropped"] == 2 and skipped == []


@pytest.mark.parametrize("csv_text, rating_column, message", [
    ("path,mood\na.jpg,Positive\n", None, "photos/labels.csv: no column 'label' (columns: path, mood); to label "
     "from a numeric rating column, set unzip.rating_column"),
    ("path,label\na.jpg,Positive\n", "score", "photos/labels.csv: no column 'score' (columns: path, label)"),
    ("path,label\na.jpg,Positive\n../secret.jpg,Negative\n", None,
     "photos/labels.csv, row 3: path '../secret.jpg' leads out of the folder"),
    ("path,label\n/etc/passwd,Negative\n", None, "photos/labels.csv, row 2: path '/etc/passwd' leads out of the folder"),
    ("path,label\na.jpg,Happy\n", None, "photos/labels.csv, row 2: label 'Happy' is not one of Negative, Positive"),
    ("path,label\na.jpg,\n", None, "photos/labels.csv, row 2: label '' is not one of Negative, Positive"),
    ("path,score\na.jpg,7\nb.jpg,high\n", "score", "photos/labels.csv, row 3: score 'high' is not a number"),
    ("path,score\na.jpg,nan\n", "score", "photos/labels.csv, row 2: score 'nan' is not a number"),
    ("path,label\na.jpg,Positive\n,Negative\n", None, "photos/labels.csv, row 3: the path is empty"),
    ("path,label\na.jpg,Positive\n./a.jpg,Negative\n", None, "photos/labels.csv, row 3: ./a.jpg is listed again (first on row 2)"),
])
def test_a_bad_labels_csv_is_one_line_naming_the_row(tmp_path, csv_text, rating_column, message):
    folder = photo_folder(tmp_path / "photos", ["a.jpg", "b.jpg"])
    (folder / "labels.csv").write_text(csv_text)
    with pytest.raises(PipelineError) as err:
        build_image_set(folder, tmp_path / "images", layout="labels_csv", rating_column=rating_column)
    assert str(err.value).endswith(message) or message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_oasis_arousal_is_read_and_a_row_without_a_number_is_skipped(tmp_path):
    images = {f"{name}.jpg": make_jpeg_bytes(8, 6, (40 * i, 90, 90)) for i, name in enumerate(("Calm 1", "Wild 1", "Odd 1"))}
    archive = make_oasis_zip(tmp_path / "o.zip", [("Calm 1", "Scene", 5.0, 1.75), ("Wild 1", "Scene", 2.0, 6.25),
                                                  ("Odd 1", "Scene", 6.0, "n/a")], images)
    rows, skipped, _ = build_image_set(archive, tmp_path / "images")
    assert [(Path(r["path"]).name, r["valence"], r["arousal"]) for r in rows] == [("Calm 1.jpg", 5.0, 1.75),
                                                                                 ("Wild 1.jpg", 2.0, 6.25)]
    assert skipped == [("shiny-server-abc/OASIS.csv:4", "Arousal_mean 'n/a' is not a number")]


def test_an_arousal_column_is_read_beside_the_rating_and_labels(tmp_path):
    folder = photo_folder(tmp_path / "photos", ["0.jpg", "1.jpg", "2.jpg"])
    (folder / "labels.csv").write_text("path,score,intensity\n0.jpg,2,6.5\n1.jpg,6,1\n2.jpg,4,3\n")
    rows, _, _ = build_image_set(folder, tmp_path / "images", threshold=4.0, margin=0.5, rating_column="score",
                                 arousal_column="intensity")
    assert [(Path(r["path"]).name, r["label"], r["valence"], r["arousal"]) for r in rows] == [
        ("0.jpg", "Negative", 2.0, 6.5), ("1.jpg", "Positive", 6.0, 1.0)]  # 2.jpg: neutral, dropped
    (folder / "labels.csv").write_text("path,label,intensity\n0.jpg,Negative,6.5\n1.jpg,Positive,1\n")
    rows, _, _ = build_image_set(folder, tmp_path / "images2", arousal_column="intensity")
    assert [(r["valence"], r["arousal"]) for r in rows] == [("", 6.5), ("", 1.0)]  # arousal without a valence rating
    rows, _, _ = build_image_set(folder, tmp_path / "images3")
    assert [(r["valence"], r["arousal"]) for r in rows] == [("", ""), ("", "")]  # no ratings: nothing invented


@pytest.mark.parametrize("csv_text, message", [
    ("path,label,intensity\na.jpg,Positive,3\nb.jpg,Negative,very\n",
     "photos/labels.csv, row 3: intensity 'very' is not a number"),
    ("path,label,intensity\na.jpg,Positive,\n", "photos/labels.csv, row 2: intensity '' is not a number"),
    ("path,label\na.jpg,Positive\n", "photos/labels.csv: no column 'intensity' (unzip.arousal_column; columns: path, label)"),
])
def test_a_bad_arousal_column_is_one_line_naming_the_row(tmp_path, csv_text, message):
    folder = photo_folder(tmp_path / "photos", ["a.jpg", "b.jpg"])
    (folder / "labels.csv").write_text(csv_text)
    with pytest.raises(PipelineError) as err:
        build_image_set(folder, tmp_path / "images", layout="labels_csv", arousal_column="intensity")
    assert str(err.value).endswith(message) and "\n" not in str(err.value), str(err.value)
