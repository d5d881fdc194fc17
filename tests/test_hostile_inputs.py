"""The bad-input corpus: each hostile or broken input, run through the stage a user would run, ends in either
a one-line `error: …` naming the file and the problem (exit 1, no traceback), or documented handling (the
file is skipped and listed in data/skipped.csv, or converted) — and a failed stage writes nothing and loses
nothing: the project folder is byte-for-byte what it was.

Numbers in the test ids are the cases of the issue that asked for this corpus (docs/guide.md: Troubleshooting).
"""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from helpers import (archive_server, assert_one_line_error, make_jpeg_bytes, make_oasis_zip, random_bytes,
                     make_png_bytes, project_params, run_stage, snapshot, symlink_info, write_zip)
from valence.data.images import load_image
from valence.files import read_csv
from valence.registry import FROZEN_MODEL, MODEL_NAMES

ARCHIVE = "data/raw/archive.zip"
PARAMS = "download:\n  filename: archive.zip\n"


def jpeg(colour, size=(16, 12)):
    return make_jpeg_bytes(*size, colour)


def class_folders(extra=None, top="set"):
    """A valid class-folder archive's members (3 Negative, 3 Positive, all distinct) plus ``extra``."""
    members = {f"{top}/Negative/n{i}.jpg": jpeg((20 * i, 0, 0)) for i in range(3)}
    members.update({f"{top}/Positive/p{i}.jpg": jpeg((0, 200, 20 * i)) for i in range(3)})
    members.update(extra or {})
    return members


def project_with_archive(tmp_path, members=None, raw_bytes=None):
    """A project folder whose data/raw holds one archive, plus earlier unzip outputs that must survive."""
    raw = tmp_path / ARCHIVE
    raw.parent.mkdir(parents=True)
    if raw_bytes is not None:
        raw.write_bytes(raw_bytes)
    else:
        write_zip(raw, members)
    for name, text in (("data/labels.csv", "path,label,valence,category\nold.jpg,Positive,,\n"),
                       ("data/images/old.jpg", "earlier output"), ("metrics/data.json", "{}\n")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "params.yaml").write_text(project_params(PARAMS))
    return tmp_path


def assert_unzip_fails_cleanly(work, start, *mentions):
    before = snapshot(work)
    result = run_stage("unzip", work)
    assert_one_line_error(result, start)
    for text in mentions:
        assert text in result.stderr
    assert snapshot(work) == before  # nothing written, nothing lost, no temporary folder left behind


def truncated_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in class_folders().items():
            zf.writestr(name, data)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def damaged_member_zip():
    """Central directory intact, but one member's compressed bytes overwritten: its CRC no longer matches."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in class_folders().items():
            zf.writestr(name, data)
    data = bytearray(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("set/Positive/p1.jpg")
    start = info.header_offset + 30 + len(info.filename) + 40
    data[start:start + 50] = bytes(50)
    return bytes(data)


def bomb_members():
    return class_folders({"set/Positive/bomb.jpg": bytes(30 * 2**20)})  # 30 MiB of zeros pack to ~30 KiB


# (test id, archive members or raw bytes, params added, expected start of the error, texts it must mention)
UNZIP_ERRORS = [
    ("01-zip-slip", class_folders({"set/Positive/../../../evil.jpg": jpeg((1, 2, 3))}), "",
     f"{ARCHIVE}: archive member 'set/Positive/../../../evil.jpg' points outside the archive folder", ()),
    ("02-absolute-path", class_folders({"/tmp/evil.jpg": jpeg((1, 2, 3))}), "",
     f"{ARCHIVE}: archive member '/tmp/evil.jpg' has an absolute path", ()),
    ("03-symlink-member", class_folders(dict([symlink_info("set/Positive/link.jpg", "/etc/passwd")])), "",
     f"{ARCHIVE}: archive member 'set/Positive/link.jpg' is a symbolic link", ()),
    ("04a-zip-bomb-ratio", bomb_members(), "",
     f"{ARCHIVE}: member 'set/Positive/bomb.jpg' is compressed", ("unzip.max_compression_ratio (100.0)",)),
    ("04b-zip-bomb-total", class_folders({"set/Positive/big.jpg": random_bytes(3 * 2**20)}), "unzip:\n  max_total_mb: 2\n",
     f"{ARCHIVE}: unpacks to 3 MiB, more than unzip.max_total_mb (2)", ()),
    ("05a-truncated-zip", truncated_zip(), "", f"{ARCHIVE}: not a readable zip archive", ()),
    ("05b-damaged-member", damaged_member_zip(), "",
     f"{ARCHIVE}: member 'set/Positive/p1.jpg' is damaged or unreadable (BadZipFile", ()),
    ("06-html-page-as-zip", b"<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n", "",
     f"{ARCHIVE}: not a readable zip archive", ()),
    ("07-empty-archive", {}, "", f"{ARCHIVE}: the archive holds no files", ()),
    ("22-oasis-csv-missing-column", None, "", f"{ARCHIVE}: cannot tell the layout",
     ("shiny/OASIS.csv lacks column(s) Valence_mean",)),
]


def oasis_without_valence(tmp_path):
    """OASIS.csv with its Valence_mean column renamed away."""
    path = make_oasis_zip(tmp_path / "o.zip", [("A 1", "Object", "6.0"), ("B 1", "Object", "1.5")],
                          {"A 1.jpg": jpeg((255, 255, 0)), "B 1.jpg": jpeg((0, 0, 0))}, top="shiny")
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members["shiny/OASIS.csv"] = members["shiny/OASIS.csv"].replace(b"Valence_mean", b"Valence_avg")
    return members


@pytest.mark.parametrize("case, members, params_text, start, mentions", UNZIP_ERRORS, ids=[c[0] for c in UNZIP_ERRORS])
def test_unzip_refuses(tmp_path, case, members, params_text, start, mentions):
    if case.startswith("22"):
        members = oasis_without_valence(tmp_path)
    if isinstance(members, bytes):
        work = project_with_archive(tmp_path / "p", raw_bytes=members)
    else:
        work = project_with_archive(tmp_path / "p", members)
    (work / "params.yaml").write_text(project_params(PARAMS + params_text))
    assert_unzip_fails_cleanly(work, start, *mentions)
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "p/data/evil.jpg").exists()


# --- documented handling: one archive holding every kind of odd file, unzipped once ---

def cmyk_jpeg():
    buf = io.BytesIO()
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(buf, "JPEG", quality=95)  # pure red in CMYK
    return buf.getvalue()


def png16():
    buf = io.BytesIO()
    Image.fromarray(np.full((12, 16), 65535 // 2, dtype=np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def exif_rotated_jpeg():
    """Stored 16 wide × 8 high, left half red; EXIF orientation 6 says: rotate 90° clockwise to view."""
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[:, :8], pixels[:, 8:] = (255, 0, 0), (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def pixel_bomb_png():
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, "PNG")  # 64 million pixels in an 8 KB file
    return buf.getvalue()


# case 20 as well: the top folder has Unicode, spaces and colons, as the seed's "dataset 50:50" had
ODD = "jeu de données 50:50 ✓"
HANDLED = {  # member name → (case, expected outcome: a skip reason, or "kept")
    f"{ODD}/Positive/notes.txt": ("12-non-image-file", "not an image file"),
    f"{ODD}/Negative/cut.jpg": ("13-truncated-jpeg", "cannot decode"),
    f"{ODD}/Negative/zero.jpg": ("14-zero-byte-image", "not an image Pillow can read"),
    f"{ODD}/Positive/cmyk.jpg": ("15-cmyk-jpeg", "kept"),
    f"{ODD}/Positive/grey.png": ("16a-grayscale-png", "kept"),
    f"{ODD}/Positive/deep.png": ("16b-16-bit-png", "kept"),
    f"{ODD}/Negative/rgba.png": ("17-rgba-png", "kept"),
    f"{ODD}/Negative/rotated.jpg": ("18-exif-rotated", "kept"),
    f"{ODD}/Positive/huge.png": ("19-decompression-bomb", "more than 50000000 pixels (decompression bomb?)"),
    f"{ODD}/Positive/Café: au lait ☕ 1.jpg": ("20-unicode-space-colon", "kept"),
    f"{ODD}/Positive/same.jpg": ("21-label-conflict", f"label conflict: the same image is {ODD}/Negative/same.jpg (Negative), "
                                                   f"{ODD}/Positive/same.jpg (Positive)"),
    f"{ODD}/Negative/same.jpg": ("21-label-conflict", f"label conflict: the same image is {ODD}/Negative/same.jpg (Negative), "
                                                   f"{ODD}/Positive/same.jpg (Positive)"),
    f"{ODD}/Negative/n0_copy.jpg": ("21b-duplicate-in-one-class", f"duplicate of {ODD}/Negative/n0.jpg"),
}


@pytest.fixture(scope="module")
def odd_files_unzipped(tmp_path_factory):
    full = make_jpeg_bytes(64, 48, (90, 30, 30))
    members = class_folders(top=ODD, extra={
        f"{ODD}/Positive/notes.txt": b"a note, not a photo\n",
        f"{ODD}/Negative/cut.jpg": full[: len(full) // 2],
        f"{ODD}/Negative/zero.jpg": b"",
        f"{ODD}/Positive/cmyk.jpg": cmyk_jpeg(),
        f"{ODD}/Positive/grey.png": make_png_bytes(mode="L", width=16, height=12, colour=77),
        f"{ODD}/Positive/deep.png": png16(),
        f"{ODD}/Negative/rgba.png": make_png_bytes(mode="RGBA", width=16, height=12, colour=(0, 200, 0, 0)),
        f"{ODD}/Negative/rotated.jpg": exif_rotated_jpeg(),
        f"{ODD}/Positive/huge.png": pixel_bomb_png(),
        f"{ODD}/Positive/Café: au lait ☕ 1.jpg": jpeg((250, 250, 250)),
        f"{ODD}/Positive/same.jpg": jpeg((10, 250, 250)),
        f"{ODD}/Negative/same.jpg": jpeg((10, 250, 250)),
        f"{ODD}/Negative/n0_copy.jpg": jpeg((0, 0, 0)),  # n0.jpg is jpeg((0, 0, 0)) too
    })
    work = project_with_archive(tmp_path_factory.mktemp("odd"), members)
    result = run_stage("unzip", work)
    assert result.returncode == 0, result.stderr
    labels = {row["path"]: row["label"] for row in read_csv(work / "data/labels.csv")}
    skipped = {row["name"]: row["reason"] for row in read_csv(work / "data/skipped.csv")}
    return work, labels, skipped


@pytest.mark.parametrize("member", HANDLED, ids=[f"{case} {m.split('/', 1)[1]}" for m, (case, _) in HANDLED.items()])
def test_odd_files_are_kept_or_skipped_and_listed(odd_files_unzipped, member):
    work, labels, skipped = odd_files_unzipped
    _, outcome = HANDLED[member]
    extracted = "data/images/" + member.split("/", 1)[1]  # the common top folder is dropped
    if outcome == "kept":
        assert labels[extracted] == member.split("/")[1] and member not in skipped
        assert (work / extracted).is_file()
    else:
        assert skipped[member].startswith(outcome) and extracted not in labels
        assert not (work / extracted).exists()


def test_odd_files_load_as_upright_rgb(odd_files_unzipped):
    work = odd_files_unzipped[0]
    load = lambda name: load_image(work / "data/images" / name, 8, 8).astype(int)  # noqa: E731
    assert np.abs(load("Positive/cmyk.jpg") - (255, 0, 0)).max() <= 8  # case 15: CMYK → RGB red
    assert np.abs(load("Positive/grey.png") - 77).max() == 0  # 16a: grey → three equal channels
    assert np.abs(load("Positive/deep.png") - 127).max() <= 1  # 16b: 16-bit scaled to 8, not clipped to 255
    assert np.abs(load("Negative/rgba.png") - 255).max() == 0  # 17: fully transparent → white background
    rotated = load_image(work / "data/images/Negative/rotated.jpg", 16, 8).astype(int)  # 18: upright is 8 × 16
    assert np.abs(rotated[2, 4] - (255, 0, 0)).max() <= 40 and np.abs(rotated[-3, 4] - (0, 0, 255)).max() <= 40


def test_skipped_files_are_counted(odd_files_unzipped):
    # the README points to metrics/data.json's `skipped` for the count: one per row of data/skipped.csv, one per
    # bad file this archive holds (the data.json written before held {})
    work, labels, skipped = odd_files_unzipped
    bad = sum(outcome != "kept" for _, outcome in HANDLED.values())
    data = json.loads((work / "metrics/data.json").read_text())
    assert data["skipped"] == len(read_csv(work / "data/skipped.csv")) == len(skipped) == bad
    assert data["images"] == len(labels) == 6 + sum(outcome == "kept" for _, outcome in HANDLED.values())
    assert not (work / "data/images/old.jpg").exists()  # replaced as a whole, not merged


# --- OASIS layout: rows and images that don't match (cases 23, 24) ---

def test_oasis_rows_without_images_images_without_rows_and_bad_valence_are_listed(tmp_path):
    rows = [("A 1", "Object", "6.0"), ("B 1", "Scene", "1.5"), ("C 1", "Object", ""), ("D 1", "Object", "high"),
            ("Gone 1", "Object", "2.0")]
    images = {"A 1.jpg": jpeg((255, 255, 0)), "B 1.jpg": jpeg((0, 0, 0)), "C 1.jpg": jpeg((1, 90, 1)),
              "D 1.jpg": jpeg((90, 1, 1)), "Stray 1.jpg": jpeg((1, 1, 90))}
    work = project_with_archive(tmp_path, {})
    make_oasis_zip(work / ARCHIVE, rows, images, top="shiny")
    assert run_stage("unzip", work).returncode == 0
    skipped = {row["name"]: row["reason"] for row in read_csv(work / "data/skipped.csv")}
    assert skipped == {
        "shiny/OASIS.csv:4": "Valence_mean '' is not a number",       # 23: empty valence
        "shiny/OASIS.csv:5": "Valence_mean 'high' is not a number",   # 23: non-numeric valence
        "shiny/OASIS.csv:6": "no image shiny/images/Gone 1.* for this row",  # 24: row without image
        "shiny/images/Stray 1.jpg": "image has no CSV row",           # 24: image without row
    }
    assert [(r["path"], r["label"]) for r in read_csv(work / "data/labels.csv")] == [
        ("data/images/images/A 1.jpg", "Positive"), ("data/images/images/B 1.jpg", "Negative")]


# --- split: too few images (cases 10, 11) ---

@pytest.mark.parametrize("case, labels, start", [
    ("10-one-class", ["Positive"] * 6, "data/labels.csv: only one class (Positive) — need Negative and Positive"),
    ("11-too-few-to-stratify", ["Negative"] + ["Positive"] * 6,
     "data/labels.csv: too few images to stratify: {'Negative': 1} (each class needs at least 2)"),
], ids=["10-one-class", "11-too-few-to-stratify"])
def test_split_refuses(tmp_path, case, labels, start):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/labels.csv").write_text("path,label\n" + "".join(f"i{n}.jpg,{label}\n" for n, label in enumerate(labels)))
    (tmp_path / "data/near_duplicates.csv").write_text("path,label,representative,distance\n")
    before = snapshot(tmp_path)
    assert_one_line_error(run_stage("split", tmp_path, ""), start)
    assert snapshot(tmp_path) == {**before, "params.yaml": snapshot(tmp_path)["params.yaml"]}


# --- download: checksum mismatch and a connection cut off (cases 8, 9) ---

@pytest.fixture
def half_server():
    with archive_server(random_bytes(300_000), mode="cut") as url:
        yield url


def project_with_earlier_download(tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / ARCHIVE).write_bytes(b"the archive from an earlier, good run")
    return tmp_path


def test_08_checksum_mismatch_run_by_hand_keeps_the_earlier_archive(tmp_path):
    # run by hand (python -m stages.download); under dvc repro DVC removes it first: tests/test_recovery.py
    work = project_with_earlier_download(tmp_path)
    (work / "empty-keras-home/datasets").mkdir(parents=True)
    (work / "empty-keras-home/datasets/archive.zip").write_bytes(b"a different archive")
    before = snapshot(work)
    result = run_stage("download", work, PARAMS + f"  sha256: '{'0' * 64}'\n")
    assert_one_line_error(result, f"{work}/empty-keras-home/datasets/archive.zip: sha256 is ")
    assert "expected 0000" in result.stderr
    assert snapshot(work) == {**before, "params.yaml": snapshot(work)["params.yaml"]}


def test_09_download_cut_off_run_by_hand_keeps_the_earlier_archive(tmp_path, half_server):
    # run by hand, as test_08; through dvc repro: tests/test_recovery.py
    work = project_with_earlier_download(tmp_path)
    before = snapshot(work)
    result = run_stage("download", work, PARAMS + f"  url: {half_server}\n")
    assert_one_line_error(result, f"{half_server}: connection closed after 150000 of 300000 bytes; run again")
    assert snapshot(work) == {**before, "params.yaml": snapshot(work)["params.yaml"]}


# --- a model file: Keras' safe mode, and a file that is no model ---

def project_with_model(tmp_path, write_model):
    image = tmp_path / "data/images/a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(jpeg((9, 9, 9)))
    (tmp_path / "data/split").mkdir()
    for name in ("train", "test"):
        (tmp_path / f"data/split/{name}.csv").write_text("path,label\ndata/images/a.jpg,Positive\n")
    (tmp_path / "models").mkdir()
    write_model(tmp_path / "models/model.keras")
    return tmp_path


def lambda_model(path):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Lambda(lambda x: x[:, 0, 0, :])(inputs))  # arbitrary code
    keras.Model(inputs, outputs).save(path)


@pytest.mark.parametrize("write_model, reason", [
    (lambda_model, "ValueError: Requested the deserialization of a `Lambda` layer"),
    (lambda path: path.write_bytes(random_bytes(5000)), "ValueError"),
], ids=["lambda-layer-refused-by-safe-mode", "random-bytes"])
def test_model_file_is_loaded_in_safe_mode(tmp_path, write_model, reason):
    work = project_with_model(tmp_path, write_model)
    before = snapshot(work)
    result = run_stage("export", work, "")  # the stage that loads the trained model
    assert_one_line_error(result, f"models/model.keras: cannot load the model ({reason}")
    after = snapshot(work)
    after.pop("empty-keras-home/keras.json")  # Keras writes its config on first import, as everywhere
    assert after == {**before, "params.yaml": after["params.yaml"]}


# --- params (case 25), and stages run before their inputs exist ---

@pytest.mark.parametrize("stage, params_text, start", [
    ("download", "download:\n  sorce: demo\n", "unknown key(s) download.sorce"),
    ("split", "split:\n  test_size: 0\n", "split.test_size must be between 0 and 1 (exclusive), got 0.0"),
    ("split", "split:\n  test_size: 1\n", "split.test_size must be between 0 and 1 (exclusive), got 1.0"),
    ("split", "split:\n  test_size: a fifth\n", "split.test_size must be of type float, got 'a fifth'"),
    ("split", "split:\n  sed: 3\n", "unknown key(s) split.sed in params.yaml; known: test_size, seed"),
    ("train", "train:\n  small_cnn:\n    epochs: 0\n", "train.small_cnn.epochs must be >= 1, got 0"),
    ("train", "train:\n  model: resnet\n",  # every model the registry knows, sorted: a new one needs no edit here
     f"train.model must be one of {', '.join(sorted((*MODEL_NAMES, FROZEN_MODEL)))}; got 'resnet'"),
    ("train", "train:\n  small_cnn:\n    learning_rat: 0.1\n", "unknown key(s) train.small_cnn.learning_rat"),
    ("train", "train:\n  epochs: 3\n", "unknown key(s) train.epochs in params.yaml"),
    ("unzip", "unzip:\n  max_total_mb: 0\n", "unzip.max_total_mb must be >= 1, got 0"),
    ("download", "download:\n  source: path\n", "download.source path needs download.path: your folder of photos"),
    ("download", "download:\n  path: my_photos\n", "download.path must be data/raw for download.source url"),
    ("download", "download:\n  source: path\n  path: my_photos\n", "my_photos: not a folder of photos or a .zip archive"),
    ("unzip", "unzip:\n  rating_column: ' '\n", "unzip.rating_column must name a column or be null"),
    ("unzip", "unzip:\n  rating_scale: [7, 1]\n", "unzip.rating_scale must be [low, high] with low < high, or [], got [7.0, 1.0]"),
    ("split", "split: [1, 2\n", "params.yaml: not valid YAML"),
    ("unzip", "", "data/raw: not found; run the download stage first"),
    ("split", "", "data/labels.csv: file not found"),
    ("evaluate", "", "data/split/folds.csv: file not found"),
    ("export", "", "data/split/test.csv: file not found"),
], ids=["misspelled-download-key", "test_size-0", "test_size-1", "test_size-text", "misspelled-split-key", "epochs-0",
        "unknown-model", "misspelled-model-key", "model-key-outside-its-section", "zip-limit-0",
        "path-source-without-path", "path-without-path-source", "path-not-there", "blank-rating-column",
        "reversed-rating-scale", "broken-yaml",
        "unzip-before-download", "split-before-unzip", "evaluate-before-split", "export-before-split"])
def test_25_bad_params_and_missing_inputs(tmp_path, stage, params_text, start):
    assert_one_line_error(run_stage(stage, tmp_path, params_text), start)
    assert snapshot(tmp_path).keys() == {"params.yaml"}
