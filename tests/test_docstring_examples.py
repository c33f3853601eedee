"""The docstring examples of the model-level functions run as doctests."""

import doctest

import pytest

import keras_normed
from keras_normed import scaling


@pytest.mark.parametrize("function", [scaling.rescale])
def test_docstring_example_runs(function):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(function, globs={"keras_normed": keras_normed})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= 5
