"""valence.runtime: TensorFlow loads quietly in every process that imports valence, and says all when asked."""
import os
import subprocess
import sys

from helpers import ROOT

NOTES = ("port.cc", "cpu_feature_guard", "absl::InitializeLog")  # TensorFlow's C++ start-up lines on x86 Linux
SCRIPT = "import valence, keras; print(float(keras.ops.sum(keras.ops.ones(3))))"  # keras loads tensorflow


def stderr_of(**env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | env
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "3.0", result.stderr
    return result.stderr


def test_tensorflow_loads_without_its_start_up_notes():
    assert not [line for line in stderr_of().splitlines() if any(note in line for note in NOTES)]


def test_tf_cpp_min_log_level_0_shows_them_again():
    assert "port.cc" in stderr_of(TF_CPP_MIN_LOG_LEVEL="0")  # oneDNN's note: the check above can fail


def test_an_error_while_loading_still_reaches_the_caller(tmp_path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow/__init__.py").write_text("raise ImportError('a broken tensorflow')\n")
    script = "import valence\ntry:\n    import tensorflow\nexcept ImportError as e:\n    print('caught', e)\n"
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    result = subprocess.run([sys.executable, "-c", script + "import sys; print('stderr works', file=sys.stderr)"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert result.stdout.strip() == "caught a broken tensorflow" and "stderr works" in result.stderr
