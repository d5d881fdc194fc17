"""Fetch the dataset archive: Keras' cache first (works offline), then the network."""
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from valence.errors import PipelineError
from valence.files import atomic_path, digest_of


def keras_cache_path(filename):
    """Where `keras.utils.get_file` would cache ``filename``: $KERAS_HOME/datasets, ~/.keras by default."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home, "datasets", filename)


def _check_sha256(path, expected, origin):
    if expected is None:
        return
    actual = digest_of(path)
    if actual != expected.lower():
        raise PipelineError(f"{origin}: sha256 is {actual}, expected {expected} (download.sha256); "
                            "the file is corrupt or a different version")


def _download(url, tmp, timeout=60):
    request = urllib.request.Request(url, headers={"User-Agent": "valence-pipeline"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))
        if total is not None and out.tell() != total:
            raise PipelineError(f"{url}: connection closed after {out.tell()} of {total} bytes; run again")


def fetch(url, filename, out_dir, sha256=None):
    """Put the archive at ``out_dir/filename`` from Keras' cache or ``url``; return its path.

    The output appears only once complete and checked, so an interrupted run leaves nothing half-written.
    """
    target = Path(out_dir, filename)
    cached = keras_cache_path(filename)
    with atomic_path(target) as tmp:
        if cached.is_file():
            print(f"using the local copy {cached}")
            shutil.copyfile(cached, tmp)
            _check_sha256(tmp, sha256, cached)
        else:
            print(f"downloading {url}")
            try:
                _download(url, tmp)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise PipelineError(
                    f"cannot download {url} ({reason}) and there is no local copy at {cached}. "
                    f"Connect to the internet, or copy the archive to {cached} (set KERAS_HOME to use another "
                    "folder), or run the demo: dvc exp run -S download.source=demo") from None
            _check_sha256(tmp, sha256, url)
    return target
