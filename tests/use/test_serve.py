"""The real server (`python -m valence serve`) on a free localhost port, sent real HTTP requests."""
import concurrent.futures
import io
import re
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, make_png_bytes, project_params, random_bytes, repo_params
from valence.data.labels import label_of
from valence.data.images import decode, model_input
from valence.use.classifier import open_classifier
from valence.use.predict import score_images
from valence import __version__
from valence.use.provenance import embed, identity

LIMITS = "evaluate:\n  flip_average: true\nserve:\n  max_request_mb: 1\n  max_images: 4\n  max_batch: 8\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model, cwd, *args, env=None, log=subprocess.PIPE):
    """The server process and its base URL once it answers /healthz; ``args``: more serve flags, ``env``: more
    environment variables, ``log``: where its output goes (a file, for a server sent many requests)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "valence", "serve", "--model", str(model), "--port", str(port),
                                *map(str, args)],
                               cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})},
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            return process, url
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start")


def wait_ready(url, headers=None):
    for _ in range(600):
        answer = httpx.get(f"{url}/readyz", headers=headers)
        if answer.status_code == 200:
            return answer.json()
        assert answer.json()["status"] == "loading", answer.text
        time.sleep(0.1)
    raise AssertionError("the model did not load")


def photo(seed, size=(40, 30)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module", params=["keras", "tflite"])
def server(request, tmp_path_factory, tiny_models):
    """(url, classifier of the same file) for a tiny model served as .keras, then as its LiteRT export."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "params.yaml").write_text(project_params(LIMITS))
    model = tiny_models[request.param == "tflite"]
    process, url = start(model, folder)
    try:
        wait_ready(url)
        yield url, open_classifier(model)
    finally:
        process.terminate()
        process.wait(30)


def expected(model, *contents):
    batch = np.stack([model_input(decode(io.BytesIO(c)), model.height, model.width) for c in contents])
    return score_images(model, batch, flip_average=True)  # as LIMITS sets evaluate.flip_average


def test_health_readiness_and_docs(server):
    url, model = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json() == {  # no file path; the tiny model records no version
        "status": "ready", "model": model.version, "model_valence_version": None, "valence_version": __version__}
    docs = httpx.get(f"{url}/docs")
    assets = re.findall(r"(?:href|src)=['\"]([^'\"]+)['\"]", docs.text)
    assert docs.status_code == 200 and any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert all(a.startswith("/") for a in assets), assets  # no CDN: the page works offline
    assert all(httpx.get(f"{url}{a}").status_code == 200 for a in assets)
    assert {"/predict", "/explain"} <= httpx.get(f"{url}/openapi.json").json()["paths"].keys()
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script src" not in page.text and "<link" not in page.text  # everything inline: works offline


def test_predict_answers_each_image_in_upload_order(server):
    url, model = server
    images = [photo(1), photo(2), photo(3)]
    files = [("data", (f"{name}.png", content, "image/png")) for name, content in zip("cab", images)]
    answer = httpx.post(f"{url}/predict", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == model.version
    assert body["provenance"] == served(model.path) and body["provenance"]["md5"] == model.version
    assert [p["filename"] for p in body["predictions"]] == ["c.png", "a.png", "b.png"]
    probability = [p["probability"] for p in body["predictions"]]
    assert np.allclose(probability, expected(model, *images), atol=1e-5)
    band = repo_params("evaluate").uncertain_band  # the project's params.yaml, as the server reads it
    assert [p["label"] for p in body["predictions"]] == [label_of(p, 0.5, band) for p in probability]
    assert "ratings" not in body and all(p.keys() == {"filename", "probability", "label"} for p in body["predictions"])


@pytest.mark.parametrize("suffix", [0, 1])  # .keras, .tflite
def test_explain_of_a_frozen_release_is_its_own_map_for_as_many_photos_as_predict_takes(tmp_path, tiny_mapped_models, suffix):
    """A model with LOGIT_MAP: /explain scores every photo in one job, its map from the same pass (not capped by
    serve.max_explain, which bounds occlusion's 50 passes a photo), equal to valence.use.explain's."""
    from valence.use.explain import CLASS_ACTIVATION, explain_batch

    (tmp_path / "params.yaml").write_text(project_params(LIMITS + "  max_explain: 1\n"))
    process, url = start(tiny_mapped_models[suffix], tmp_path)
    try:
        wait_ready(url)
        images = [photo(seed, (80, 64)) for seed in range(4)]
        answer = httpx.post(f"{url}/explain", files=[("data", (f"{i}.png", c, "image/png")) for i, c in enumerate(images)])
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["method"] == CLASS_ACTIVATION and body["grid"] == [2, 3] and len(body["explanations"]) == 4
        model = open_classifier(tiny_mapped_models[suffix])
        scores, maps = explain_batch(model, np.stack([model_input(decode(io.BytesIO(c)), 64, 80) for c in images]), True)
        np.testing.assert_allclose([e["map"] for e in body["explanations"]], maps, atol=1e-5)
        np.testing.assert_allclose([e["probability"] for e in body["explanations"]], scores["probability"], atol=1e-5)
    finally:
        process.terminate()
        process.wait(30)


def test_explain_gives_each_image_the_map_valence_explain_computes(server):
    from valence.use.explain import GRID, OCCLUSION, explain

    url, model = server
    images = [photo(4), photo(5)]
    answer = httpx.post(f"{url}/explain", files=[("data", (f"{n}.png", c, "image/png")) for n, c in zip("xy", images)])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == model.version and body["grid"] == [GRID, GRID] and body["method"] == OCCLUSION
    assert body["provenance"] == served(model.path)
    for item, content, p in zip(body["explanations"], images, expected(model, *images)):
        pixels = model_input(decode(io.BytesIO(content)), model.height, model.width)
        probability, heat = explain(lambda batch: score_images(model, batch, flip_average=True), pixels)
        assert item["probability"] == pytest.approx(p, abs=1e-5) == pytest.approx(probability, abs=1e-5)
        assert np.asarray(item["map"]).shape == (GRID, GRID)
        np.testing.assert_allclose(item["map"], heat, atol=1e-5)
        assert np.abs(heat).max() > 0  # random noise: every region matters a little
    refused = httpx.post(f"{url}/explain", files=[("data", ("notes.txt", b"hello", "text/plain"))])
    assert refused.status_code == 415 and refused.json()["detail"].startswith("notes.txt: not an image")


def served(path):
    """The identity the server gives: ``identity`` without the file's name."""
    return {k: v for k, v in identity(path).items() if k != "file"}


def test_answers_carry_the_provenance_embedded_in_the_model_file_and_no_folder(tmp_path, tiny_models):
    """A copy of the model with metadata embedded: /predict and /explain name that copy (its md5, not the
    original's) and give its metadata, /readyz the valence version it records; neither names a file or folder of
    the server."""
    (tmp_path / "params.yaml").write_text(project_params(LIMITS))
    model = tmp_path / "release" / "model.tflite"
    model.parent.mkdir()
    model.write_bytes(tiny_models[1].read_bytes())
    metadata = {"release": "2024.1", "trained_on": "oasis", "valence_version": "0.1.9"}
    embed(model, metadata)
    process, url = start(model, tmp_path)
    try:
        wait_ready(url)
        files = [("data", ("a.png", photo(1), "image/png"))]
        answers = [httpx.post(f"{url}/{route}", files=files) for route in ("predict", "explain")]
        ready = httpx.get(f"{url}/readyz").json()
    finally:
        process.terminate()
        process.wait(30)
    copied = open_classifier(model).version
    assert copied != open_classifier(tiny_models[1]).version
    assert ready == {"status": "ready", "model": copied, "model_valence_version": "0.1.9",
                     "valence_version": __version__}
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == copied and answer.json()["provenance"] == {"md5": copied, "embedded": metadata}
        assert str(tmp_path) not in answer.text and "model.tflite" not in answer.text  # no file of the server


def pixel_bomb():
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, "PNG")  # 64 million pixels in an 8 KB file
    return buf.getvalue()


@pytest.mark.parametrize("files, status, detail", [
    ([("good.png", photo(1)), ("notes.txt", b"hello")], 415, "notes.txt: not an image Pillow can read"),
    ([("cut.png", photo(1)[:200])], 400, "cut.png: cannot decode"),
    ([("bomb.png", pixel_bomb())], 413, "bomb.png: more than 50000000 pixels (decompression bomb?)"),
    ([(f"{i}.png", make_png_bytes("RGB")) for i in range(5)], 413, "5 images in one request; at most 4"),
    ([("big.png", random_bytes(1_100_000))], 413, "request body over the 1 MB limit (serve.max_request_mb)"),
])
def test_bad_requests_get_a_status_and_a_one_line_reason(server, files, status, detail):
    url, _ = server
    answer = httpx.post(f"{url}/predict", files=[("data", f) for f in files])
    assert answer.status_code == status and answer.json()["detail"].startswith(detail), answer.text
    assert "\n" not in answer.json()["detail"]


def test_a_chunked_body_over_the_cap_is_cut_off(server):
    """No Content-Length to judge by: the server counts the bytes as they come and stops reading at the cap
    (1 MB here), so the client cannot push a 64 MB body through, and the answer it gets, if any, is the 413."""
    url, _ = server
    boundary, chunks = "xyz", 1024  # 64 MB in 64 KB chunks
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    sent = []

    def body():
        yield head
        for _ in range(chunks):
            sent.append(1)
            yield bytes(65536)
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        answer = httpx.post(f"{url}/predict", content=body(),
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    except httpx.TransportError:  # the server closed the connection before its answer could be read
        answer = None
    if answer is not None:
        assert answer.status_code == 413 and "1 MB limit" in answer.json()["detail"], answer.text
    # past the cap the server reads no more: what the client got out is the 1 MB plus what the socket buffers
    # on both ends hold, a few MB at most, not the 64 MB a server reading the whole body would take
    assert len(sent) < chunks // 4, f"the client sent {len(sent) * 64} KB of the {chunks * 64} KB body"
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_request_without_images_is_a_validation_error(server):
    url, _ = server
    assert httpx.post(f"{url}/predict", data={"other": "x"}).status_code == 422


def test_concurrent_requests_each_get_their_own_answers(server):
    url, model = server
    images = [photo(10 + i) for i in range(16)]

    def send(i):
        answer = httpx.post(f"{url}/predict", files=[("data", (f"{i}.png", images[i], "image/png"))], timeout=60)
        return answer.status_code, answer.json()["predictions"][0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(16)))
    assert [status for status, _ in answers] == [200] * 16
    assert [p["filename"] for _, p in answers] == [f"{i}.png" for i in range(16)]
    assert np.allclose([p["probability"] for _, p in answers], expected(model, *images), atol=1e-5)


def test_a_model_that_cannot_load_stops_the_server_with_one_line(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"not a model")
    (tmp_path / "params.yaml").write_text(project_params({}))
    process, _ = start(tmp_path / "model.keras", tmp_path)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert output.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'model.keras'}: cannot load the model")
    assert "Traceback" not in output


def test_the_serving_requirements_are_the_main_pins_without_tensorflow():
    def pins(name):
        """{package: version} of a requirements file, its `-r` includes followed."""
        found = {}
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("-r "):
                found.update(pins(line[3:].strip()))
            elif "==" in line:
                found.update([line.split("==")])
        return found

    serving, main = pins("requirements-serve.txt"), pins("requirements.txt")
    assert serving.items() <= main.items()
    assert not {"tensorflow-cpu", "keras", "dvc", "scikit-learn"} & serving.keys()


RESULTS = "[...document.querySelectorAll('#results li')].map(li => [li.dataset.filename, li.dataset.label])"


def test_the_page_scores_uploaded_photos_as_predict_does_in_a_real_browser(server, chromium, tmp_path):
    """GET / in headless Chromium: keyboard focus reaches the file input, two photos chosen there show the labels
    /predict gives, a non-image shows its reason in words, a phone-width window needs no sideways scrolling,
    and the page asks nothing of any other host."""
    from browser import Chromium

    url, _ = server
    paths = []
    for name, seed in (("beach.png", 6), ("crash.png", 7)):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(photo(seed, size=(120, 90)))
    (tmp_path / "notes.txt").write_text("not a photo")
    answer = httpx.post(f"{url}/predict", files=[("data", (p.name, p.read_bytes(), "image/png")) for p in paths]).json()
    with Chromium(chromium) as browser:
        browser.open(f"{url}/")
        assert browser.wait_for("document.readyState === 'complete' && !!document.getElementById('files')")
        browser.press("Tab", "Tab")
        assert browser.evaluate("document.activeElement.id") == "files"
        browser.upload("#files", paths)
        shown = browser.wait_for(f"document.querySelectorAll('#results li').length === 2 && {RESULTS}")
        assert shown == [[p["filename"], p["label"]] for p in answer["predictions"]]
        assert browser.evaluate("[...document.querySelectorAll('#results canvas')].length") == 2
        browser.viewport(390, 844)
        assert browser.wait_for("document.documentElement.scrollWidth <= 390")
        browser.screenshot(ROOT / "test-artifacts/page_phone.png")
        browser.upload("#files", [tmp_path / "notes.txt"])
        error = browser.wait_for("document.getElementById('error').textContent")
        assert error.startswith("Not an image: notes.txt: not an image"), error
        browser.evaluate("document.getElementById('error').textContent = ''")
        browser.upload("#files", paths * 3)  # LIMITS: at most 4 images a request
        error = browser.wait_for("document.getElementById('error').textContent")
        assert error == "Too large or too many photos: 6 images in one request; at most 4 (serve.max_images)", error
        requests = browser.requests()
    assert requests and all(r.startswith((url, "blob:")) for r in requests), requests  # nothing from a CDN


def test_a_model_with_rating_heads_answers_valence_and_arousal_and_the_page_plots_them(tiny_rating_models, chromium,
                                                                                        tmp_path):
    """/predict and /explain of a model with rating heads give each photo's valence and arousal (flip-averaged,
    as predict) and their scales; the page writes them and draws the photo on the valence–arousal plane."""
    from browser import Chromium

    (tmp_path / "params.yaml").write_text(project_params(LIMITS))
    model = tiny_rating_models[1]
    process, url = start(model, tmp_path)
    try:
        wait_ready(url)
        rated = open_classifier(model)
        images = [photo(11), photo(12)]
        files = [("data", (f"{i}.png", content, "image/png")) for i, content in enumerate(images)]
        body = httpx.post(f"{url}/predict", files=files).json()
        assert body["ratings"] == {"valence": {"low": 1.0, "high": 7.0}, "arousal": {"low": 1.0, "high": 7.0}}
        batch = np.stack([model_input(decode(io.BytesIO(c)), rated.height, rated.width) for c in images])
        from valence.use.predict import score_all

        scores = score_all(rated, batch, flip_average=True)
        for name in ("valence", "arousal"):
            assert np.allclose([p[name] for p in body["predictions"]], scores[name], atol=1e-3)
        explained = httpx.post(f"{url}/explain", files=files[:1]).json()
        assert explained["explanations"][0]["valence"] == pytest.approx(float(scores["valence"][0]), abs=1e-3)
        (tmp_path / "a.png").write_bytes(images[0])
        with Chromium(chromium) as browser:
            browser.open(f"{url}/")
            assert browser.wait_for("document.readyState === 'complete' && !!document.getElementById('files')")
            browser.upload("#files", [tmp_path / "a.png"])
            label = browser.wait_for("document.querySelector('#results .plane') && "
                                     "document.querySelector('#results .plane').getAttribute('aria-label')")
            assert label == f"valence {scores['valence'][0]:.1f}, arousal {scores['arousal'][0]:.1f}"
            assert browser.evaluate("document.querySelectorAll('#results .plane circle').length") == 1
    finally:
        process.terminate()
        process.wait(30)


def test_a_model_with_a_photo_check_answers_it_and_the_page_says_so_in_words(tiny_checked_models, chromium, tmp_path):
    """/predict gives each image's photo_score and photo (no below 0.5, as predict); the page writes a warning
    under the label of an image the check rejects, and none under one it passes."""
    from browser import Chromium

    (tmp_path / "params.yaml").write_text(project_params(LIMITS))
    process, url = start(tiny_checked_models[0], tmp_path)
    try:
        wait_ready(url)
        images = {}
        for name, level in (("dark", 40), ("bright", 220)):
            Image.fromarray(np.full((30, 40, 3), level, np.uint8)).save(tmp_path / f"{name}.png")
            images[name] = (tmp_path / f"{name}.png").read_bytes()
        files = [("data", (f"{name}.png", content, "image/png")) for name, content in images.items()]
        body = httpx.post(f"{url}/predict", files=files).json()
        verdicts = {p["filename"]: (p["photo"], p["photo_score"]) for p in body["predictions"]}
        assert verdicts["dark.png"][0] == "yes" and verdicts["bright.png"][0] == "no"
        assert all((verdict == "yes") == (score >= 0.5) for verdict, score in verdicts.values())
        with Chromium(chromium) as browser:
            browser.open(f"{url}/")
            assert browser.wait_for("document.readyState === 'complete' && !!document.getElementById('files')")
            browser.upload("#files", [tmp_path / "dark.png", tmp_path / "bright.png"])
            assert browser.wait_for("document.querySelectorAll('#results li').length === 2")
            warned = browser.evaluate("[...document.querySelectorAll('#results li')].map(li => "
                                      "[li.dataset.filename, !!li.querySelector('.not-photo')])")
            assert sorted(map(tuple, warned)) == [("bright.png", True), ("dark.png", False)]
            text = browser.evaluate("document.querySelector('#results .not-photo').textContent")
            assert "does not look like a photo" in text
    finally:
        process.terminate()
        process.wait(30)
