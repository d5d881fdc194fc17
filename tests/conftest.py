"""Fixtures shared by test modules."""
import os

import pytest

from browser import chromium_binary


@pytest.fixture(scope="session")
def chromium():
    """The Chromium binary for real-browser tests; skipped where it is missing, unless CI requires it."""
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("VALENCE_REQUIRE_CHROMIUM"):  # .ci/run sets it: CI must not skip the browser check
            pytest.fail("Chromium is required (VALENCE_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("Chromium is not installed (apt install chromium; .ci/run does)")
    return binary
