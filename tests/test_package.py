"""The project as a package (pyproject.toml): one version wherever a user meets it, a licence it names and
ships, every sub-package found, and a changelog whose newest entry is this version."""
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest

import valence
from helpers import ROOT, pyproject_version


def test_the_version_printed_installed_and_in_pyproject_agree():
    """(A freshly trained model's version: tests/test_pipeline.py, which trains one.)"""
    assert re.fullmatch(r"\d+\.\d+\.\d+", pyproject_version())
    printed = subprocess.run([sys.executable, "-m", "valence", "--version"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == f"valence {pyproject_version()}" == f"valence {valence.__version__}"
    command = shutil.which("valence", path=str(ROOT / ".venv" / "bin")) or shutil.which("valence")
    if command:  # the installed console script says the same
        assert subprocess.run([command, "--version"], capture_output=True, text=True,
                              timeout=60).stdout.strip() == printed.stdout.strip()
    assert importlib.metadata.version("valence") == pyproject_version(), (
        "the installed metadata is stale: pip install -e . again")


def test_the_newest_changelog_entry_is_this_version():
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert releases and releases[0] == valence.__version__, "a new version needs its CHANGELOG.md entry first"
    assert len(set(releases)) == len(releases)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel pyproject.toml builds from the committed files, plus one new sub-package nobody listed; built
    offline with the installed setuptools (requirements-dev.txt), in a copy, so the checkout stays clean."""
    copy = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z", "pyproject.toml", "README.md", "LICENSE", "NOTICE", "valence"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, tracked):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    (copy / "valence" / "brand_new").mkdir()
    (copy / "valence" / "brand_new" / "__init__.py").write_text("")
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
                            "--no-cache-dir", str(copy), "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = out.glob("valence-*.whl")
    return zipfile.ZipFile(path), copy


def test_the_wheel_holds_every_subpackage_and_the_page(wheel):
    archive, copy = wheel
    names = set(archive.namelist())
    packages = {str(p.relative_to(copy)) for p in (copy / "valence").rglob("__init__.py")}
    assert "valence/brand_new/__init__.py" in packages and packages <= names
    assert "valence/use/page.html" in names


def test_the_wheel_names_and_ships_its_licence_and_version(wheel):
    archive, _ = wheel
    meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(archive.read(meta_name).decode())
    assert meta["Version"] == valence.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert set(meta.get_all("License-File")) == {"LICENSE", "NOTICE"}
    licence = archive.read(meta_name.replace("METADATA", "licenses/LICENSE")).decode()
    assert licence == (ROOT / "LICENSE").read_text() and "Apache License" in licence and "Version 2.0" in licence
    assert meta["Description-Content-Type"] == "text/markdown" and "# valence" in meta.get_payload()
    assert meta.get_all("Project-URL") and meta.get_all("Classifier")
