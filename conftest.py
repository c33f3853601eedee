"""The documentation runs as part of the test suite (collected by Sybil).

- Every ```python block of README.md and docs/*.md runs, in order, page by page: the blocks of
  one page share one namespace, as if pasted one after the other into one Python session
  started in a fresh, empty folder (files an example writes land there). A block that is only a
  display is fenced as ``text`` or ``console``; a block that cannot run in the test process
  (several worker processes) is preceded by ``<!-- skip: next "reason" -->``.
- Every ``>>>`` example of a docstring in keras_normed/ runs as a doctest, in the namespace of
  its module with ``keras``, ``numpy as np`` and ``keras_normed`` imported, in a fresh empty
  folder too.

``make test`` runs these in its TensorFlow run (``make test-tf``, ``pytest -q``: setup.cfg's
``testpaths`` name README.md, docs and keras_normed). The paper's examples/ are imported as in a
clone: the repository root is on ``sys.path``.
"""

import doctest
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from sybil import Sybil  # noqa: E402
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser  # noqa: E402
from sybil.parsers.rest import DocTestParser  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _enter_empty_folder(namespace):
    """Run a page's examples in a new empty folder, as a reader would in a scratch folder."""
    namespace["_docs_cwd"] = os.getcwd()
    namespace["_docs_tmp"] = tempfile.mkdtemp(prefix="keras-normed-docs-")
    os.chdir(namespace["_docs_tmp"])


def _leave_folder(namespace):
    os.chdir(namespace["_docs_cwd"])
    shutil.rmtree(namespace["_docs_tmp"], ignore_errors=True)


_pages = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=_FLAGS), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    setup=_enter_empty_folder,
    teardown=_leave_folder,
    name="docs",
)

def _docstring_namespace(namespace):
    """A module's doctests run in its namespace, plus the imports every example assumes."""
    import keras
    import numpy as np

    import keras_normed

    namespace.update(keras=keras, np=np, keras_normed=keras_normed)
    _enter_empty_folder(namespace)


_docstrings = Sybil(
    parsers=[DocTestParser(optionflags=_FLAGS)],
    patterns=["keras_normed/*.py", "keras_normed/*/*.py"],
    excludes=["__main__.py"],
    setup=_docstring_namespace,
    teardown=_leave_folder,
    name="docstrings",
)

pytest_collect_file = (_pages + _docstrings).pytest()
