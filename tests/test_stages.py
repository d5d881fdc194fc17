"""Stage scripts as a user runs them: bad input ends in one clear line, exit 1, and no half-written output."""
from helpers import assert_one_line_error, run_stage


def test_download_without_network_or_local_copy(tmp_path):
    result = run_stage("download", tmp_path, "download:\n  url: http://127.0.0.1:9/archive.zip\n")
    assert_one_line_error(result, "cannot download http://127.0.0.1:9/archive.zip")
    assert "empty-keras-home/datasets/shiny-server" in result.stderr and "download.source=demo" in result.stderr
    assert not any((tmp_path / "data/raw").iterdir())


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_stage("split", tmp_path, "", VALENCE_DEBUG="1")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_demo_download_then_unzip_keeps_earlier_outputs_on_failure(tmp_path):
    params_text = "download:\n  source: demo\n  demo_images_per_class: 3\n  demo_height: 20\n  demo_width: 20\n"
    assert run_stage("download", tmp_path, params_text).returncode == 0
    assert run_stage("unzip", tmp_path, params_text).returncode == 0
    labels = (tmp_path / "data/labels.csv").read_bytes()
    result = run_stage("unzip", tmp_path, params_text + "unzip:\n  layout: rated_csv\n")
    assert_one_line_error(result, "data/raw/demo.zip: expected one rated CSV")
    assert (tmp_path / "data/labels.csv").read_bytes() == labels
    assert len(list((tmp_path / "data/images").rglob("*.jpg"))) == 6
    assert not list((tmp_path / "data").glob(".*tmp"))
