"""Redraw the README's two pictures from the released model: docs/explain.png and docs/page.png.

    dvc repro && python docs/pictures.py

docs/explain.png is `valence explain` of one photo (the photo beside its map of why); docs/page.png is the
page `valence serve` gives, in headless Chromium at 1100 px, after three photos were chosen there. Both are
committed to git (a few hundred KB) so that the README shows them wherever the repository is browsed; run this
after a change to the model, the page or the maps. Needs Chromium (or Chrome) on the PATH; the server listens
on 127.0.0.1 only and the page asks nothing of any other host.
"""
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium driver the page's tests use

from browser import Chromium, chromium_binary  # noqa: E402

PHOTOS = ROOT / "data/images/images"
EXPLAINED = "Beach 1.jpg"  # the README's explain picture
ON_THE_PAGE = ["Baby 1.jpg", "Car crash 1.jpg", "Beach 1.jpg"]  # a Positive, a Negative and the one above
MODEL = ROOT / "models/model.tflite"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def explain_picture(out):
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["valence", "explain", str(PHOTOS / EXPLAINED), "--out", folder, "--model", str(MODEL)],
                       check=True, cwd=ROOT)
        shutil.copyfile(Path(folder) / Path(EXPLAINED).with_suffix(".png").name, out)


def page_picture(out):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(["valence", "serve", "--model", str(MODEL), "--port", str(port)], cwd=ROOT)
    try:
        for _ in range(240):  # the model loads in a few seconds
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        with Chromium(chromium_binary()) as browser:
            browser.open(f"{url}/")
            browser.viewport(1100, 900)
            browser.wait_for("document.readyState === 'complete' && !!document.getElementById('files')")
            browser.upload("#files", [PHOTOS / name for name in ON_THE_PAGE])
            browser.wait_for(f"document.querySelectorAll('#results canvas').length === {len(ON_THE_PAGE)}", timeout=120)
            height = browser.evaluate("document.getElementById('results').getBoundingClientRect().bottom")
            browser.viewport(1100, int(height) + 24)  # down to the last photo, no empty window below
            time.sleep(1)
            browser.screenshot(out)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    for name, draw in (("explain.png", explain_picture), ("page.png", page_picture)):
        path = ROOT / "docs" / name
        tmp = path.with_suffix(".tmp.png")
        draw(tmp)
        tmp.replace(path)  # a failed run leaves the last picture as it was
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
