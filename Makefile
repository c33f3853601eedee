# `make demo` and `make test` do all set-up on a machine with only Python 3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow
# Real MNIST for tests and benchmarks when the shared folder is beside the checkout.
export KERAS_NORMED_MNIST_DIR ?= $(wildcard $(CURDIR)/../shared/data/mnist)

.PHONY: demo test test-tf test-jax test-torch test-oldest test-slow lint bench docs docs-check \
	clean

# The backend-neutral tests: every public feature (layers, initializers, structure, the engine
# and its model-level steps, .keras saving, bench). `make test` runs them a second time with
# KERAS_BACKEND=jax; tests marked `tensorflow` in them (SavedModel, TFLite, tf.distribute,
# tf.data, tf.function) skip there. The experiments and CLI commands, the TensorFlow-only files
# (export, tf.distribute) and the tests that start their own processes per backend
# (cross-backend .keras, 2 JAX processes, the GPU check) run once, in the TensorFlow run;
# test_saving.py too (its `.keras` round trip on JAX is the cross-backend test's), and, for time
# (2-core machines: TF run 4.5 min, this JAX run 9.1 min on an AVX-512 Xeon with another job
# beside; 7.8 and 8.4 min on an AVX2 EPYC), test_structure.py
# and test_bad_input.py (they pass on
# JAX: `make test-jax NEUTRAL_TESTS="tests/test_structure.py tests/test_bad_input.py"`).
NEUTRAL_TESTS := $(addprefix tests/test_,circulant data data_dependent delta_orthogonal \
	diagnostics engine_zoo fft_ops keras_compat layer_harness layer_inputs lsuv materialize \
	noise_rule normed periodic random_walk scaling seeds weight_norm bench)
NEUTRAL_TESTS := $(addsuffix .py,$(NEUTRAL_TESTS))

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[cpu,test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.paper compare --quick --output results/demo

test: $(STAMP)
	$(BIN)/ruff check keras_normed tests examples
	$(MAKE) --no-print-directory test-tf test-jax

# Also runs every ```python block of README.md and docs/*.md and every docstring example
# (conftest.py, Sybil) and builds the documentation site (tests/test_docs_site.py).
test-tf: $(STAMP)
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q $(NEUTRAL_TESTS)

# PyTorch where it is installed (not by this Makefile: its wheels bring GBs of CUDA libraries).
test-torch: $(STAMP)
	@$(BIN)/python -c "import torch" 2>/dev/null || { echo "make test-torch: torch is not \
	installed in $(VENV); install it first (e.g. $(BIN)/pip install torch \
	--index-url https://download.pytorch.org/whl/cpu)"; exit 1; }
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q $(NEUTRAL_TESTS)

# The default suite on the oldest declared pair (setup.cfg's `oldest` extra), in its own venv.
OLDEST_VENV ?= .venv-oldest
$(OLDEST_VENV)/.installed-stamp: setup.cfg setup.py
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q -e ".[oldest,test]"
	touch $@

test-oldest: $(OLDEST_VENV)/.installed-stamp
	$(OLDEST_VENV)/bin/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check keras_normed tests examples

bench: $(STAMP)
	$(BIN)/keras-normed bench

# The documentation site, offline, into site/: MkDocs + Material, the API reference generated
# from the docstrings (mkdocstrings). --strict: a broken link, anchor or reference fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The built site in headless Chromium (Debian's chromium + chromium-driver, installed by
# .ci/install-chromium when missing): the home page, the Normed API entry and the results page
# with its figure; screenshots in results/docs-site/. 15-25 s with the build, once Chromium is
# installed (installing it with apt-get: about a minute).
docs-check: docs
	.ci/install-chromium
	$(BIN)/python -m pytest -q -m browser tests/test_docs_browser.py

clean:
	rm -rf $(VENV) $(OLDEST_VENV) build *.egg-info site
