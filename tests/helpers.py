"""Tiny generated images and zip archives for tests (plain functions, so any test file can import them)."""
import contextlib
import hashlib
import http.server
import io
import os
import shutil
import random
import re
import stat
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path

import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"  # read-only data and weights beside the checkout (../shared/README.md)
OASIS_ARCHIVE = SHARED / "datasets/oasis/shiny-server-1a3bcada01115bbe651bf0e69f7410c8ef63cc94.zip"
MOBILENET_WEIGHTS = SHARED / "models/mobilenet_v2"


def require_shared(*paths, check):
    """Skip the calling test, naming ``check`` (what does not run) and the missing files, when a file from
    ../shared is not there; where VALENCE_REQUIRE_SHARED is set (.ci/run sets it), fail it instead: CI must not
    lose the OASIS and ImageNet checks silently."""
    import pytest

    missing = [str(path) for path in paths if not Path(path).exists()]
    if not missing:
        return
    message = f"{check} did not run: {', '.join(missing)} not found"
    if os.environ.get("VALENCE_REQUIRE_SHARED"):
        pytest.fail(f"{message} (VALENCE_REQUIRE_SHARED is set)")
    pytest.skip(message)


OASIS_COLUMNS = ["", "Theme", "Category", "Source", "Valence_mean", "Valence_SD", "Valence_N",
                 "Arousal_mean", "Arousal_SD", "Arousal_N"]


def make_jpeg_bytes(width=8, height=6, colour=(200, 40, 40)):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_png_bytes(mode="RGBA", width=8, height=6, colour=None):
    colour = colour if colour is not None else {"RGBA": (10, 200, 10, 128), "L": 128}.get(mode, 0)
    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def random_bytes(n, seed=0):
    """``n`` incompressible bytes, seeded so every run is the same."""
    return random.Random(seed).randbytes(n)


def make_garbage_bytes(n=600, seed=0):
    """Bytes no image decoder accepts."""
    return b"\x00garbage" + random_bytes(n, seed)


def symlink_info(name, target="/etc/passwd"):
    """(ZipInfo, bytes) for a member that unzip would create as a symbolic link to ``target``."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def write_zip(path, members):
    """Write ``{name or ZipInfo: bytes}`` to a zip at ``path``; a name ending in '/' is a folder entry."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if isinstance(name, str) and name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return path


def oasis_csv_bytes(rows, line_end="\r"):
    """OASIS.csv-like bytes: empty first header, ids I1…, rows given as (theme, category, valence[, arousal]);
    arousal 3.5 where not given."""
    lines = [",".join(OASIS_COLUMNS)]
    for i, (theme, category, valence, *arousal) in enumerate(rows, start=1):
        lines.append(",".join([f"I{i}", theme, category, "Pixabay", str(valence), "1.1", "100",
                               str(arousal[0] if arousal else 3.5), "1.2", "99"]))
    return line_end.join(lines).encode() + line_end.encode()


def make_oasis_zip(path, rows, images, top="shiny-server-abc", extra=None, line_end="\r"):
    """An OASIS-shaped archive: ``top/OASIS.csv`` (CR-only), ``top/images/<name>`` for ``images``
    ({file name: bytes}), folder entries, a macOS resource fork and an app file, plus ``extra`` members."""
    members = {
        f"{top}/": b"",
        f"{top}/__MACOSX/": b"",
        f"{top}/__MACOSX/._OASIS.csv": b"\x00\x05\x16\x07Mac OS X resource fork, Theme,Valence_mean",
        f"{top}/images/": b"",
        f"{top}/OASIS.csv": oasis_csv_bytes(rows, line_end),
        f"{top}/server.R": b"library(shiny)\nshinyServer(function(input, output) {})\n",
    }
    members.update({f"{top}/images/{name}": data for name, data in images.items()})
    members.update(extra or {})
    return write_zip(path, members)


# tqdm's progress bars, and the start-up log lines TensorFlow's C++ core prints whatever the log level
NOISE = re.compile(r".*%\||WARNING: All log messages before absl|[IWE]\d{4} |To enable the following instructions")


def merged(base, changes):
    """``base`` with ``changes`` merged in, mapping by mapping."""
    result = dict(base)
    for key, value in changes.items():
        both_maps = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if both_maps else value
    return result


def project_params(changes):
    """The text of the project's params.yaml with ``changes`` (a mapping, or YAML text of one) merged in, as a
    user edits a few values; text that is not a YAML mapping comes back as it is (for the bad-YAML tests)."""
    if isinstance(changes, str):
        try:
            changes = yaml.safe_load(changes) or {}
        except yaml.YAMLError:
            return changes
        if not isinstance(changes, dict):
            return yaml.safe_dump(changes)
    return yaml.safe_dump(merged(yaml.safe_load((ROOT / "params.yaml").read_text()), changes), sort_keys=False)


def repo_params(section):
    """One section of the project's params.yaml, typed (valence.params; train: valence.train_params)."""
    from valence import params, train_params

    return train_params.load(ROOT / "params.yaml") if section == "train" else params.load(section, ROOT / "params.yaml")


def run_stage(name, cwd, params_text=None, args=(), **env):
    """Run ``stages/<name>.py`` as a user would, in ``cwd``; when ``params_text`` is given, params.yaml is first
    written as the project's with those values changed (project_params)."""
    if params_text is not None:
        (cwd / "params.yaml").write_text(project_params(params_text))
    environment = {"PATH": "/usr/bin:/bin", "KERAS_HOME": str(cwd / "empty-keras-home"), **env}
    return subprocess.run([sys.executable, str(ROOT / f"stages/{name}.py"), *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True)


def assert_one_line_error(result, start):
    """Exit status 1 and one stderr line, ``error: <start>…``, besides progress bars; no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not NOISE.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {start}"), result.stderr


def snapshot(folder):
    """{relative path: sha256} of every file and symlink under ``folder``: what a failed stage must not touch."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def pyproject_version():
    """The version pyproject.toml's build gives the package: it reads valence.__version__ (tool.setuptools.dynamic)
    as a literal from valence/__init__.py, without importing it; so does this."""
    import ast
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in config["project"]["dynamic"] and "version" not in config["project"]  # set in one place
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "valence.__version__"}
    tree = ast.parse((ROOT / "valence" / "__init__.py").read_text())
    return next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"])


PROJECT_FILES = ["stages", "valence", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/plots"]
DVC = [sys.executable, "-m", "dvc"]


def run(args, cwd, env):
    """Run a command that must succeed; return its stdout and stderr together."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def copy_project_files(work):
    """The files a project needs (PROJECT_FILES) copied from this checkout into ``work``."""
    for name in PROJECT_FILES:
        source, target = ROOT / name, work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)


def make_project(work, download, train):
    """A git + DVC copy of the project in ``work``, with tiny small_cnn training; returns the environment.

    ``download`` and ``train`` update those params sections (small_cnn, 64×80, 2 epochs unless changed);
    small_cnn because the default mobilenet_v2 needs ImageNet weights, which tests/learn/test_models.py covers.
    """
    copy_project_files(work)
    document = yaml.safe_load((work / "params.yaml").read_text())
    document["download"].update(download)
    document["train"].update(model="small_cnn", batch_size=8)
    document["train"]["small_cnn"].update({"image_height": 64, "image_width": 80, "epochs": 2, **train})
    (work / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return git_commit_all(work)


def git_commit_all(work):
    """``git init`` and commit everything in ``work``; returns the environment for commands there (this
    virtualenv first on PATH, an empty Keras cache: never the network, never the shared data)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               KERAS_HOME=str(work / "empty-keras-home"), GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="t@t", PYTHONUNBUFFERED="1")
    run(["git", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "project"], work, env)
    return env


def fresh_clone(work):
    """What `git clone` of this checkout would give, uncommitted edits included: the files git tracks or would
    track (not ignored), copied into ``work`` and committed. Returns the environment, as git_commit_all."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    return git_commit_all(work)


class ArchiveServer(http.server.BaseHTTPRequestHandler):
    """Serves ``body`` at any path, announcing its full length, in one of three ``mode``s: "full";
    "cut" (half, then hang up); "stall" (half, set ``half_sent``, then wait for ``release``)."""
    body, mode = b"", "full"
    half_sent, release = threading.Event(), threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.mode == "full":
            self.wfile.write(self.body)
            return
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        if self.mode == "stall":
            self.half_sent.set()
            self.release.wait(60)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def archive_server(body, mode="full"):
    """A local HTTP server (never the network) for ``body``; yields its URL."""
    ArchiveServer.body, ArchiveServer.mode = body, mode
    ArchiveServer.half_sent.clear()
    ArchiveServer.release.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/archive.zip"
    finally:
        ArchiveServer.release.set()
        server.shutdown()


def save_tiny_model(path, height=24, width=32, seed=0):
    """A small untrained Keras classifier of this project's kind (RGB 0–255 in, P(Positive) out) at ``path``.

    Untrained, it still gives different photos different probabilities, which is all predict and serve need.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((height, width, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(4, 3, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(1, activation="sigmoid", bias_initializer="zeros"),
    ])
    model.save(path)
    return path


def save_photos(folder, n, size=(40, 30), seed=0):
    """``n`` random-noise PNG photos in ``folder`` (created), named 0.png, 1.png, …; returns their paths."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(paths[-1])
    return paths


def link_mobilenet_weights(keras_home):
    """Symbolic links to ../shared's MobileNetV2 ImageNet weights in ``keras_home``/models/, where Keras looks
    before it downloads: the frozen recipe's second backbone, with no network."""
    models = Path(keras_home) / "models"
    models.mkdir(parents=True, exist_ok=True)
    for weights in sorted(MOBILENET_WEIGHTS.glob("*.h5")):
        (models / weights.name).symlink_to(weights)
    return models


def make_default_project(work, download):
    """A git + DVC copy of the project in ``work`` with the repository's params.yaml as it is (the shipped
    recipe, train.model frozen) but for ``download``'s values; MobileNetV2's weights linked into its empty
    Keras cache (link_mobilenet_weights; callers check them with require_shared). Returns the environment."""
    copy_project_files(work)
    (work / "params.yaml").write_text(project_params({"download": download}))
    link_mobilenet_weights(work / "empty-keras-home")
    return git_commit_all(work)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment():
    """This checkout importable, TensorFlow quiet: for the cluster's processes and the valence command."""
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")


class Cluster:
    """A scheduler and ``workers`` one-thread worker processes on 127.0.0.1 (``worker_env``: theirs)."""

    def __init__(self, workers=2, worker_env=None):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        python = [sys.executable, "-m"]
        self.scheduler = subprocess.Popen(python + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                                    "--port", self.address.rsplit(":", 1)[1], "--no-dashboard"],
                                          env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers = [subprocess.Popen(python + ["distributed.cli.dask_worker", self.address, "--nthreads", "1",
                                                   "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"],
                                         env=worker_env or environment(), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                        for _ in range(workers)]
        try:
            from distributed import Client

            with Client(self.address, timeout="30s") as client:
                if workers:
                    client.wait_for_workers(workers, timeout=60)
        except BaseException:  # never leave a scheduler or workers running behind a failed start
            self.stop()
            raise

    def stop(self):
        for process in self.workers + [self.scheduler]:
            process.kill()
            process.wait(30)


@contextlib.contextmanager
def s3_server(*buckets):
    """A local S3 server (moto, in this process, on 127.0.0.1) holding the empty ``buckets``: its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield url
        # moto keeps its buckets in the process, not the server: empty them for the next test's server
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)
    finally:
        server.stop()


def s3_environment(endpoint):
    """What a process needs to read the ``s3_server`` at ``endpoint`` through boto3 and s3fs (one try a request,
    so an unreachable endpoint fails fast)."""
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "1"}


def noise_photos(folder, count):
    """``count`` small noise photos (40 × 30 PNGs, photo00.png …) and one file that is not an image, in ``folder``:
    what the cluster tests predict on."""
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
            folder / f"photo{i:0{len(str(count - 1))}d}.png")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def valence_predict(args, env=None, **kwargs):
    """`python -m valence predict ARGS` from the project root: the finished process, its output as text."""
    return subprocess.run([sys.executable, "-m", "valence", "predict", *map(str, args)], cwd=ROOT,
                          env=env or environment(), capture_output=True, text=True, **kwargs)
