"""The serving image (Dockerfile): built by a Docker daemon started here, run with a token (it binds 0.0.0.0, so
it refuses to start without one), asked /healthz and /predict with and without the token; then run as a Dask
worker that scores for `valence predict --scheduler` with LiteRT.

Needs root, `dockerd` and `debootstrap` (Debian's docker.io and debootstrap packages; .ci/run installs them). No
image registry is reachable, so the base image `debian:bookworm-slim` is made from Debian's packages
(debootstrap) and imported, and pip in the build installs from a wheelhouse downloaded here first (this
machine's pip has the CA bundle and mirrors the image would lack). The daemon's images are kept under
~/.cache/valence-docker, so a second run reuses the base image. Where no daemon can start, the test is skipped
with the reason, unless VALENCE_REQUIRE_DOCKER is set (.ci/run sets it).
"""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import valence
from helpers import ROOT, Cluster, environment, free_port, save_photos

pytestmark = pytest.mark.slow  # a base image, a build and a container: minutes
BASE = "debian:bookworm-slim"  # the Dockerfile's FROM
TOKEN = "container-test-token-0123456789"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "valence-docker"


def unavailable(reason):
    if os.environ.get("VALENCE_REQUIRE_DOCKER"):
        pytest.fail(f"Docker is required (VALENCE_REQUIRE_DOCKER) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker():
    """A function running the docker CLI against a daemon started for this module."""
    for tool in ("dockerd", "docker", "debootstrap"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt install docker.io debootstrap; .ci/run does)")
    if os.geteuid() != 0:
        unavailable("starting dockerd needs root")
    exec_root = Path(tempfile.mkdtemp(prefix="vd", dir="/tmp"))  # short: unix socket paths are limited
    socket_path = exec_root / "docker.sock"
    CACHE.mkdir(parents=True, exist_ok=True)
    log = open(exec_root.parent / f"{exec_root.name}-dockerd.log", "w")
    daemon = subprocess.Popen(["dockerd", "--data-root", str(CACHE / "data"), "--exec-root", str(exec_root / "e"),
                               "--pidfile", str(exec_root / "dockerd.pid"), "-H", f"unix://{socket_path}",
                               "--iptables=false", "--ip6tables=false", "--bridge=none"],
                              stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}", "DOCKER_BUILDKIT": "0"}

    def run(*args, check=True, timeout=900, stdin=None):
        result = subprocess.run(["docker", *args], env=env, capture_output=True, text=stdin is None, timeout=timeout,
                                stdin=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} …: {result.stderr[-3000:]}")
        return result

    try:
        for _ in range(60):
            if daemon.poll() is not None or run("info", check=False).returncode == 0:
                break
            time.sleep(0.5)
        if daemon.poll() is not None or run("info", check=False).returncode != 0:
            unavailable(f"dockerd did not start (see {log.name})")
        yield run
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        netns = exec_root / "e/netns/default"
        if os.path.ismount(netns):
            subprocess.run(["umount", str(netns)], check=False)
        shutil.rmtree(exec_root, ignore_errors=True)
        log.close()


def base_image(docker):
    """debian:bookworm-slim, from Debian's packages when the daemon does not have it yet."""
    if docker("image", "inspect", BASE, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian"],
                       check=True, capture_output=True, timeout=1200)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        docker("import", "-", BASE, stdin=tar.stdout)
        assert tar.wait() == 0


def build_context(folder, tiny_models):
    """What `docker build .` sees in a checkout after `dvc repro export`, with a tiny model and a wheelhouse."""
    for name in ("Dockerfile", ".dockerignore", "params.yaml", "requirements-serve.txt", "LICENSE", "NOTICE"):
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "valence", folder / "valence")  # __pycache__ folders too, as in a used checkout
    (folder / "models").mkdir()
    shutil.copy(tiny_models[1], folder / "models/model.tflite")
    (folder / "data").mkdir()
    (folder / "data/secret.txt").write_text("left out by .dockerignore")
    wheels = CACHE / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "-r", str(ROOT / "requirements-serve.txt"),
                    "-d", str(wheels)], check=True, capture_output=True, timeout=900)
    shutil.copytree(wheels, folder / "wheels")


def photo_bytes():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image(docker, tmp_path_factory, tiny_models):
    """The serving image built from this checkout with the tiny model: (its tag, the build context)."""
    context = tmp_path_factory.mktemp("context")
    base_image(docker)
    build_context(context, tiny_models)
    started = time.monotonic()
    docker("build", "--network", "host", "--build-arg", "PIP_OPTIONS=--no-index --find-links /src/wheels",
           "-t", "valence-serve-test", str(context), timeout=1800)
    built_s = time.monotonic() - started
    size = int(docker("image", "inspect", "--format", "{{.Size}}", "valence-serve-test").stdout)
    print(f"image built in {built_s:.0f} s, {size / 2**20:.0f} MiB")
    return "valence-serve-test", context


def test_the_serving_image_builds_runs_as_non_root_and_answers(docker, image, tiny_models):
    from valence.data.images import decode, model_input
    from valence.use.classifier import open_classifier
    from valence.use.predict import score_images

    tag, context = image
    user = docker("image", "inspect", "--format", "{{.Config.User}}", tag).stdout.strip()
    assert user == "valence"
    listing = docker("run", "--rm", "--network", "host", tag, "sh", "-c",
                     "id -u; ls /app /app/models; if test -e /src; then echo build-files-left; fi").stdout.split()
    assert listing[0] != "0" and "data" not in listing and "model.tflite" in listing and "build-files-left" not in listing
    assert {"LICENSE", "NOTICE"} <= set(listing)  # Apache-2.0: whoever passes the image on passes these on
    packaged = docker("run", "--rm", "--network", "host", tag, "sh", "-c",
                      "cd /app && find valence -type f | sort").stdout.split()
    assert packaged == sorted(str(p.relative_to(ROOT)) for p in (ROOT / "valence").rglob("*")
                              if p.suffix in (".py", ".html") and "__pycache__" not in p.parts)  # the whole package
    refused = docker("run", "--rm", "--network", "host", "-e", f"PORT={free_port()}", tag, check=False)
    assert refused.returncode == 1 and refused.stderr.strip() == (  # no token: it never binds 0.0.0.0
        "error: --host 0.0.0.0 is reachable from other machines: give a token (--token-file PATH or VALENCE_TOKEN), "
        "or --insecure to serve without one"), refused.stderr
    port = free_port()
    name = f"valence-serve-test-{port}"
    docker("run", "-d", "--network", "host", "-e", f"PORT={port}", "-e", f"VALENCE_TOKEN={TOKEN}", "--name", name, tag)
    url, bearer = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/readyz", timeout=2, headers=bearer).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            logs = docker("logs", name, check=False)
            raise AssertionError((logs.stdout + logs.stderr)[-2000:])
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}  # open: the HEALTHCHECK and probes
        content = photo_bytes()
        upload = [("data", ("p.png", content, "image/png"))]
        refused = httpx.post(f"{url}/predict", files=upload, timeout=30)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", refused.text
        assert httpx.get(f"{url}/readyz").status_code == 401
        assert httpx.get(f"{url}/readyz", headers=bearer).json()["valence_version"] == valence.__version__
        answer = httpx.post(f"{url}/predict", files=upload, timeout=30, headers=bearer).json()
        model = open_classifier(context / "models/model.tflite")
        pixels = model_input(decode(io.BytesIO(content)), model.height, model.width)
        expected = score_images(model, pixels[None], flip_average=True)[0]  # the repo's params.yaml: flip averaging
        assert answer["predictions"][0]["probability"] == pytest.approx(expected, abs=1e-5)
        assert httpx.get(url).text.startswith("<!doctype html>")
        for _ in range(60):  # HEALTHCHECK: every 10 s after a 20 s start period
            health = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy"
    finally:
        docker("rm", "-f", name, check=False)
    secret = context / "token"  # the secret-file form: Docker and Compose secrets mount at /run/secrets/<name>
    secret.write_text(TOKEN + "\n")
    secret.chmod(0o644)
    docker("run", "-d", "--network", "host", "-e", f"PORT={port}", "-v", f"{secret}:/run/secrets/valence_token:ro",
           "--name", name, tag)
    try:
        for _ in range(240):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2, headers=bearer).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            logs = docker("logs", name, check=False)
            raise AssertionError((logs.stdout + logs.stderr)[-2000:])
        assert httpx.get(f"{url}/readyz").status_code == 401
    finally:
        docker("rm", "-f", name, check=False)


def test_the_image_is_a_dask_worker_that_scores_with_litert_and_no_tensorflow(docker, image, tmp_path, tiny_models):
    """`docker run … valence dask worker tcp://…`: the container joins a scheduler started here, and `valence
    predict --scheduler` with the .tflite model writes the CSV the in-process run writes, byte for byte."""
    tag, _ = image
    found = docker("run", "--rm", tag, "python", "-c", "import importlib.util as u; "
                   "print(*(u.find_spec(m) for m in ('tensorflow', 'keras', 'distributed')))").stdout.split()
    assert found[:2] == ["None", "None"] and found[2] != "None"
    photos = tmp_path / "photos"
    save_photos(photos, 60)
    (photos / "notes.txt").write_text("not a photo")
    model = tiny_models[1]

    def predict(*args):
        return subprocess.run([sys.executable, "-m", "valence", "predict", photos, "--model", model, *map(str, args)],
                              cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=600)

    assert predict("--out", tmp_path / "in-process.csv").returncode == 0
    scheduler = Cluster(workers=0)
    name = f"valence-worker-test-{free_port()}"
    try:  # the photos at the same path inside, read-only: the file system a cluster's workers share
        docker("run", "-d", "--network", "host", "-v", f"{photos}:{photos}:ro", "--name", name, tag,
               "dask", "worker", scheduler.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard")
        from distributed import Client

        with Client(scheduler.address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=120)
            assert set(client.run(lambda: __import__("valence").__file__).values()) == {"/app/valence/__init__.py"}
        result = predict("--out", tmp_path / "cluster.csv", "--scheduler", scheduler.address, "--shard-size", 16)
        logs = docker("logs", name, check=False)
    finally:
        docker("rm", "-f", name, check=False)
        scheduler.stop()
    assert result.returncode == 0, result.stderr + logs.stderr[-2000:]
    assert (tmp_path / "cluster.csv").read_bytes() == (tmp_path / "in-process.csv").read_bytes()
    assert "notes.txt: not an image" in result.stderr and "no shard ran twice" in result.stdout
