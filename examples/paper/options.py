"""The one options module of the paper runners: the data options, and the argparse types of
:mod:`keras_normed.cli` (re-exported here, so a runner imports its options from one place).

Every value is checked where argparse reads it (``type=``), so a bad value ends as argparse's
own errors do: one line naming the option (``argument --epochs: must be an integer >= 1, got
'0'``) and exit status 2, before any data is loaded or any model is built. Checks that need
two options at once raise :class:`OptionError`, which the dispatcher reports the same way.

Standard library (and ``keras_normed.cli``) only: a command's ``--help`` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional

from keras_normed.cli import (
    OptionError,
    add_output_argument,
    choice_list,
    choices,
    existing_dir,
    existing_file,
    int_at_least,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    positive_int_list,
    unit_interval,
)

__all__ = [
    "ENV_VAR",
    "SOURCES",
    "OptionError",
    "positive_int",
    "nonneg_int",
    "int_at_least",
    "positive_float",
    "nonneg_float",
    "unit_interval",
    "positive_int_list",
    "choice_list",
    "choices",
    "existing_dir",
    "existing_file",
    "has_mnist",
    "add_data_arguments",
    "add_output_argument",
    "check_data",
]

# Where the experiments look for MNIST IDX files, and the data sources (see data.load_digits).
ENV_VAR = "KERAS_NORMED_MNIST_DIR"
SOURCES = ("auto", "mnist-dir", "keras", "sklearn")
_MNIST_STEMS = ("t10k-images-idx3-ubyte", "train-images-idx3-ubyte")


def has_mnist(folder: Optional[str]) -> bool:
    """Whether ``folder`` holds MNIST image IDX files (gzip-compressed or not)."""
    return bool(folder) and any(os.path.exists(os.path.join(folder, stem + ext))
                                for stem in _MNIST_STEMS for ext in (".gz", ""))


def add_data_arguments(parser: argparse.ArgumentParser, n_train: int = 8000,
                       n_test: int = 2000) -> None:
    """``--source``, ``--data-dir``, ``--n-train``, ``--n-test``, as every training command has
    them (see :func:`examples.paper.data.load_digits`)."""
    parser.add_argument("--source", choices=SOURCES, default="auto",
                        help=f"where the digits come from; auto: the MNIST IDX files in "
                             f"--data-dir or ${ENV_VAR} if there are any, else scikit-learn's "
                             "bundled 8x8 digits (offline)")
    parser.add_argument("--data-dir", type=existing_dir, default=None, metavar="DIR",
                        help=f"folder with MNIST IDX files (default: ${ENV_VAR})")
    parser.add_argument("--n-train", type=positive_int, default=n_train, metavar="N",
                        help="training images (fewer when the source has fewer)")
    parser.add_argument("--n-test", type=positive_int, default=n_test, metavar="N",
                        help="test images (fewer when the source has fewer)")


def check_data(source: str, data_dir: Optional[str]) -> None:
    """Refuse a data setting that cannot work, before anything is loaded.

    Raises:
        OptionError: ``--data-dir`` holds no MNIST IDX files, or ``--source mnist-dir`` has
            neither ``--data-dir`` nor ``$KERAS_NORMED_MNIST_DIR`` naming such a folder.
    """
    if data_dir is not None and not has_mnist(data_dir):
        raise OptionError(f"argument --data-dir: no MNIST IDX files "
                          f"(t10k-images-idx3-ubyte.gz, ...) in {data_dir!r}")
    if source == "mnist-dir" and data_dir is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise OptionError(f"argument --source: mnist-dir needs --data-dir or ${ENV_VAR}")
        if not has_mnist(env):
            raise OptionError(f"argument --source: mnist-dir: ${ENV_VAR}={env!r} holds no "
                              "MNIST IDX files")
