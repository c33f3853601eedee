"""The paper reproductions: networks, data loading and one runner per experiment.

Not part of the installed package; run from a clone's root::

    python -m examples.paper compare --quick
    python -m examples.paper --help
"""
