"""The widgets' JavaScript against a fake model in headless Chromium (js/test/check_harness.py)."""

import os
import pathlib
import subprocess
import sys

import pytest

from .conftest import chromium_path

pytestmark = pytest.mark.e2e
HARNESS = pathlib.Path(__file__).resolve().parents[2] / "js" / "test" / "check_harness.py"


def test_tile_grids_render_hover_click_and_sort():
    env = {"CHROMIUM": chromium_path()}
    done = subprocess.run(
        [sys.executable, str(HARNESS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
