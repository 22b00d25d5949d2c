"""Both languages lint clean: ruff for Python, biome and tsc for the JavaScript; no Python
function body over `MAX_BODY` lines."""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
JS = ROOT / "js"
#: the most lines a function's body may have, its docstring aside
MAX_BODY = 60


def run(cmd, cwd=ROOT):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


def test_ruff_check():
    run([sys.executable, "-m", "ruff", "check", "."])


def test_ruff_format():
    run([sys.executable, "-m", "ruff", "format", "--check", "."])


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of `fn`'s body from its first statement after the docstring to its end."""
    first = fn.body[0]
    doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if doc and isinstance(first.value.value, str):
        start = fn.body[1].lineno if len(fn.body) > 1 else fn.end_lineno
    else:
        start = first.lineno
    return fn.end_lineno - start + 1


def test_no_long_python_function():
    long = []
    for path in sorted((ROOT / "cnnviz_widgets").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = body_lines(node)
                if n > MAX_BODY:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"function bodies over {MAX_BODY} lines (split them):\n" + "\n".join(long)


@pytest.mark.parametrize("script", ["lint", "typecheck"])
def test_js(script):
    if not (JS / "node_modules").exists() or shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("js/node_modules is missing: `pip install -e .` runs `npm install` in js/")
        pytest.skip("js/node_modules is missing: run `npm install` in js/")
    run(["npm", "run", "--silent", script], cwd=JS)
