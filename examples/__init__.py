"""Programs that use keras-normed; run them from a clone's root (``python -m examples.paper``)."""
