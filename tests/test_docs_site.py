"""The documentation site cannot go stale (issue 16).

- ``mkdocs build --strict`` passes (a broken link, anchor or API reference fails it), and the
  API reference it generates lists every public class and function of the package: each name in
  the ``__all__`` of ``keras_normed`` and of every module with a page under docs/api/ (and every
  public module of ``keras_normed.__all__`` has a page).
- Every figure in docs/figures/ is shown on a page.
- Every fenced block of README.md and docs/*.md names its language: ``python`` blocks run in the
  test suite (conftest.py, Sybil), displays are ``text`` or ``console``, commands ``bash``.

The examples themselves run through conftest.py; the site in a browser: ``make docs-check``.
"""

import glob
import importlib
import inspect
import os
import re
import subprocess
import sys
import zlib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(DOCS, "*.md")))
API_PAGES = sorted(glob.glob(os.path.join(DOCS, "api", "*.md")))


def _documented_modules():
    """The module each API page renders (its ``::: module`` directive)."""
    modules = []
    for path in API_PAGES:
        with open(path, encoding="utf-8") as f:
            modules += re.findall(r"^::: ([\w.]+)\s*$", f.read(), re.M)
    return modules


def _public_objects(module_name):
    """Classes and functions a module makes public: its ``__all__``, else names without ``_``."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module_name]
    objects = [(n, getattr(module, n)) for n in names]
    return [(n, obj) for n, obj in objects if inspect.isclass(obj) or inspect.isfunction(obj)]


def _inventory(site):
    with open(os.path.join(site, "objects.inv"), "rb") as f:
        header = [f.readline() for _ in range(4)]
        assert b"zlib" in header[3]
        body = zlib.decompress(f.read()).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines()}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return str(site)


def test_every_public_module_has_an_api_page():
    import keras_normed

    documented = set(_documented_modules())
    assert "keras_normed" in documented
    for name in keras_normed.__all__:
        if inspect.ismodule(getattr(keras_normed, name)):
            assert f"keras_normed.{name}" in documented, f"add docs/api/{name}.md"


def test_strict_build_lists_every_public_class_and_function(built_site):
    inventory = _inventory(built_site)
    missing = []
    for module in _documented_modules():
        for name, obj in _public_objects(module):
            # Listed under the name the module exports, or where it is defined (the package's
            # ``materialize`` function shadows its module, keras_normed.materialize).
            canonical = f"{obj.__module__}.{obj.__qualname__}"
            if f"{module}.{name}" not in inventory and canonical not in inventory:
                missing.append(f"{module}.{name}")
    assert not missing, f"public names missing from the API reference: {missing}"


def test_every_figure_is_shown_on_a_page(built_site):
    html = ""
    for path in glob.glob(os.path.join(built_site, "**", "*.html"), recursive=True):
        with open(path, encoding="utf-8") as f:
            html += f.read()
    figures = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DOCS, "figures", "*.png")))
    assert figures
    unshown = [f for f in figures if not re.search(rf'<img [^>]*src="[^"]*figures/{f}"', html)]
    assert not unshown, f"figures in docs/figures/ that no page shows: {unshown}"


@pytest.mark.parametrize("path", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_every_fenced_block_names_its_language(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    bare, inside = [], False
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if not inside and line.strip() == "```":
                bare.append(number)
            inside = not inside
    assert not inside, "a fenced block is not closed"
    assert not bare, (f"fences without a language at lines {bare}: python runs in the tests, "
                      "a display is text or console, a shell command bash")
