# `make demo` and `make test` do all set-up on a machine with only Python 3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow
# Real MNIST for tests and benchmarks when the shared folder is beside the checkout.
export KERAS_NORMED_MNIST_DIR ?= $(wildcard $(CURDIR)/../shared/data/mnist)

.PHONY: demo test test-oldest test-slow lint bench clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[cpu,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.paper compare --quick --output results/demo

test: $(STAMP)
	$(BIN)/ruff check keras_normed tests examples
	$(BIN)/python -m pytest -q

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

clean:
	rm -rf $(VENV) $(OLDEST_VENV) build *.egg-info
