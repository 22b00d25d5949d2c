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


def module_imports() -> dict[str, set[str]]:
    """The package's modules and, for each, the package modules it imports at module level
    (`from . import x` names module x, not the package)."""
    files = {}
    for path in (ROOT / "cnnviz_widgets").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names} & files.keys()
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                subs = {f"{base}.{a.name}" for a in node.names}
                graph[name] |= (subs & files.keys()) or ({base} & files.keys())
    return graph


def test_no_circle_of_imports():
    graph = module_imports()
    circles = []

    def visit(name, path):
        for other in sorted(graph[name]):
            if other in path:
                circles.append(" -> ".join([*path[path.index(other) :], other]))
            elif other not in done:
                visit(other, [*path, other])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not circles, "modules importing each other:\n" + "\n".join(sorted(set(circles)))


@pytest.mark.parametrize("script", ["lint", "typecheck"])
def test_js(script):
    if not (JS / "node_modules").exists() or shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("js/node_modules is missing: `pip install -e .` runs `npm install` in js/")
        pytest.skip("js/node_modules is missing: run `npm install` in js/")
    run(["npm", "run", "--silent", script], cwd=JS)
