"""Both languages lint clean: ruff for Python, biome and tsc for the JavaScript."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
JS = ROOT / "js"


def run(cmd, cwd=ROOT):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


def test_ruff_check():
    run([sys.executable, "-m", "ruff", "check", "."])


def test_ruff_format():
    run([sys.executable, "-m", "ruff", "format", "--check", "."])


@pytest.mark.parametrize("script", ["lint", "typecheck"])
def test_js(script):
    if not (JS / "node_modules").exists() or shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("js/node_modules is missing: `pip install -e .` runs `npm install` in js/")
        pytest.skip("js/node_modules is missing: run `npm install` in js/")
    run(["npm", "run", "--silent", script], cwd=JS)
