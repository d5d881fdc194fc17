"""Headless Chromium for tests, driven over the DevTools protocol on a pipe (no extra Python package needed).

Open a page, wait until a JavaScript condition holds, read values from the page, choose files in a file
input, press keys, set the window size, list every network request the page made, and take a full-page
screenshot.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--window-size=1400,1000", "--remote-debugging-pipe"]


def chromium_binary():
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


class Chromium:
    def __init__(self, binary):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def pipes_on_fds_3_and_4():  # where --remote-debugging-pipe reads commands and writes replies
            read, write = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                         preexec_fn=pipes_on_fds_3_and_4, close_fds=False,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer, self._last_id, self.events, self._session = b"", 0, [], None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._process.kill()
        self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _send(self, method, params=None, timeout=30):
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._receive()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def _receive(self):
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def open(self, url):
        """Open ``url`` in a new tab, recording its network requests."""
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._send("Network.enable")
        self._send("Page.enable")
        self._send("Page.navigate", {"url": url})

    def evaluate(self, expression):
        result = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def wait_for(self, expression, timeout=30):
        """Poll ``expression`` until it is truthy; return its last value either way."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def upload(self, selector, paths):
        """Choose ``paths`` in the file input ``selector``, as a person picking files does (it fires change)."""
        found = self._send("Runtime.evaluate", {"expression": f"document.querySelector({json.dumps(selector)})"})
        self._send("DOM.enable")
        self._send("DOM.setFileInputFiles", {"files": [str(p) for p in paths], "objectId": found["result"]["objectId"]})

    def press(self, key, code):
        """One key press (down, up) to the focused element, e.g. ("Tab", "Tab")."""
        for kind in ("rawKeyDown", "keyUp"):
            self._send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": code,
                                                  "windowsVirtualKeyCode": {"Tab": 9, "Enter": 13}.get(key, 0)})

    def viewport(self, width, height):
        """Lay the page out as a window of ``width`` × ``height`` CSS pixels (a phone: 390 × 844)."""
        self._send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": width < 600})

    def requests(self):
        """The URL of every request the page has made so far."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path):
        data = self._send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
