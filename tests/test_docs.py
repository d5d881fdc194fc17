"""The README's and docs' pictures reach whoever browses the repository: each is a PNG committed to git."""
import re
import subprocess

import pytest
from PIL import Image

from helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def pictures(page):
    """The local images a Markdown page shows: ![alt](path), paths relative to the page."""
    return [page.parent / target for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text())
            if "://" not in target]


def test_the_pages_show_pictures():
    assert {p.name for page in PAGES for p in pictures(page)} >= {"page.png", "explain.png"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_picture_a_page_shows_is_a_png_in_git(page):
    tracked = set(subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split("\0"))
    for picture in pictures(page):
        relative = picture.resolve().relative_to(ROOT).as_posix()
        assert relative in tracked, f"{page.name} shows {relative}, which git does not hold (a fresh clone lacks it)"
        assert not (ROOT / f"{relative}.dvc").exists(), f"{relative} is DVC-tracked: `dvc pull` fails without a remote"
        with Image.open(picture) as image:
            assert image.format == "PNG" and min(image.size) >= 200, relative
