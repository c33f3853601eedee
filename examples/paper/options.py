"""The one options module of the paper runners: their argparse types, the options they share, the
data options, and the one seed scheme.

Every value is checked where argparse reads it (``type=``), so a bad value ends as argparse's
own errors do: one line naming the option (``argument --epochs: must be an integer >= 1, got
'0'``) and exit status 2, before any data is loaded or any model is built. Checks that need
two options at once raise :class:`OptionError`, which the dispatcher reports the same way.
The integer types and :class:`OptionError` are :mod:`keras_normed.cli`'s (``keras-normed bench``
uses them too); the others serve the runners only.

Seeds: a run of seed ``s`` calls :func:`seed_everything` (Python, numpy and the backend) and
gives its ``i``-th initializer the explicit seed :func:`layer_seed` ``(s, i) = s * 100 + i``.

Standard library (and ``keras_normed.cli``) only: a command's ``--help`` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Callable, List, Optional

from keras_normed.cli import (
    OptionError,
    int_at_least,
    nonneg_int,
    output_file,
    positive_int,
    positive_int_list,
    writable_under,
)

__all__ = [
    "ENV_VAR",
    "SOURCES",
    "SHARED",
    "OptionError",
    "positive_int",
    "nonneg_int",
    "int_at_least",
    "positive_float",
    "nonneg_float",
    "unit_interval",
    "positive_int_list",
    "choices",
    "parsed",
    "existing_dir",
    "output_dir",
    "output_file",
    "existing_file",
    "has_mnist",
    "idx_file",
    "MNIST_SPLITS",
    "add_options",
    "add_data_arguments",
    "add_output_argument",
    "apply_quick",
    "check_data",
    "seed_everything",
    "layer_seed",
]

# Where the experiments look for MNIST IDX files, and the data sources (see data.load_digits).
ENV_VAR = "KERAS_NORMED_MNIST_DIR"
SOURCES = ("auto", "mnist-dir", "keras", "sklearn")
MNIST_SPLITS = ("train", "t10k")


# --------------------------------------------------------------------------- argparse types


def _number(name: str, what: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type named ``name``: a finite number for which ``ok(value)`` holds."""

    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {str(text)!r}")
        return value

    parse.__name__ = name
    parse.__doc__ = f"An argparse type: {what}, finite."
    return parse


positive_float = _number("positive_float", "a number > 0", lambda v: v > 0)
nonneg_float = _number("nonneg_float", "a number >= 0", lambda v: v >= 0)
unit_interval = _number("unit_interval", "a number in [0, 1)", lambda v: 0 <= v < 1)


def choices(allowed) -> Callable[[str], List[str]]:
    """An argparse type: a comma-separated, non-empty subset of ``allowed`` (repeats dropped:
    a run counted twice would understate the spread over seeds)."""

    def parse(text: str) -> List[str]:
        items = [s.strip() for s in str(text).split(",") if s.strip()]
        unknown = [s for s in items if s not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown value(s) {', '.join(unknown) or '(none given)'} in {str(text)!r}; "
                f"expected a comma-separated subset of {','.join(allowed)}")
        return list(dict.fromkeys(items))

    parse.__name__ = "choices"
    return parse


def parsed(value, parse: Callable, option: str):
    """``value`` of ``option`` as its argparse type ``parse`` returns it: a string (an option
    set programmatically, as in ``args.inits = "he,lecun"``) is parsed, anything else is kept.

    Raises:
        OptionError: naming ``option``, when ``parse`` refuses the string.
    """
    if not isinstance(value, str):
        return value
    try:
        return parse(value)
    except argparse.ArgumentTypeError as err:
        raise OptionError(f"argument {option}: {err}") from None


def existing_dir(text: str) -> str:
    """An argparse type: a folder that exists."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"no such folder: {text!r}" if not os.path.exists(text) else
            f"not a folder: {text!r}")
    return text


def existing_file(text: str) -> str:
    """An argparse type: a file that exists."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


# --------------------------------------------------------------------------- shared options

# The options several runners take: dest -> (type, metavar, help). See add_options.
SHARED = {
    "epochs": (positive_int, "N", "training epochs per run"),
    "steps": (positive_int, "N", "training steps per run"),
    "batch_size": (positive_int, "N", "training batch size"),
    "lr": (positive_float, None, "SGD learning rate"),
    "momentum": (unit_interval, None, "SGD momentum, in [0, 1)"),
    "width": (positive_int, "N", "units per layer"),
    "seed": (nonneg_int, "N", "seed of the split, the weights and the batches"),
    "seeds": (positive_int, "N", "runs per init (seeds 0..N-1)"),
    "probe_size": (positive_int, "N", "training images in rescale's probe batch"),
}


def add_options(parser: argparse.ArgumentParser, inits=None, **defaults) -> None:
    """Add the shared options given as keywords, in their order, with their defaults:
    ``batch_size=64`` adds ``--batch-size`` (default 64) with the help of :data:`SHARED`;
    ``lr=(0.002, "help")`` gives a default and the runner's own help. ``inits`` (a tuple of
    names) adds ``--inits``: a comma-separated subset of them, all by default."""
    for dest, default in defaults.items():
        kind, metavar, text = SHARED[dest]
        if isinstance(default, tuple):
            default, text = default
        parser.add_argument("--" + dest.replace("_", "-"), type=kind, default=default,
                            metavar=metavar, help=text)
    if inits is not None:
        parser.add_argument("--inits", type=choices(inits), default=",".join(inits),
                            help=f"comma-separated subset of {','.join(inits)}")


def output_dir(text: str) -> str:
    """An argparse type: a folder to write into (created if missing), checked before a run so
    that a long run does not fail at its end."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a folder (a file is there): {text!r}")
    return writable_under(os.path.abspath(text), text)


def add_output_argument(parser: argparse.ArgumentParser, default: Optional[str],
                        help: str, metavar: str = "DIR") -> None:
    """``--output`` (with ``--out`` as a hidden alias, the old spelling of some commands): a
    folder, or a file with ``metavar="FILE"``, checked before the run."""
    kind = output_file if metavar == "FILE" else output_dir
    parser.add_argument("--output", type=kind, default=default, metavar=metavar, help=help)
    parser.add_argument("--out", dest="output", type=kind, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def apply_quick(args: argparse.Namespace, add_arguments: Callable, quick: dict) -> None:
    """``--quick``: the values of ``quick`` for the options left at their defaults (options
    given explicitly win, ``--data-dir`` included); ``add_arguments`` builds the command's
    parser, to read the defaults."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])
    for key, value in quick.items():
        if getattr(args, key) == getattr(defaults, key):
            setattr(args, key, value)


def idx_file(folder: str, stem: str) -> Optional[str]:
    """The path of the IDX file ``stem`` in ``folder``, gzip-compressed or not, or ``None``."""
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def has_mnist(folder: Optional[str]) -> bool:
    """Whether ``folder`` holds the MNIST IDX files of a split, images and labels."""
    return bool(folder) and any(
        idx_file(folder, f"{split}-images-idx3-ubyte") and
        idx_file(folder, f"{split}-labels-idx1-ubyte") for split in MNIST_SPLITS)


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
        raise OptionError(f"argument --data-dir: no MNIST IDX files (a split's images and "
                          f"labels: t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz, "
                          f"...) in {data_dir!r}")
    if source == "mnist-dir" and data_dir is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise OptionError(f"argument --source: mnist-dir needs --data-dir or ${ENV_VAR}")
        if not has_mnist(env):
            raise OptionError(f"argument --source: mnist-dir: ${ENV_VAR}={env!r} holds no "
                              "MNIST IDX files")


# --------------------------------------------------------------------------- seeds


def seed_everything(seed: int) -> None:
    """Seed a run: Python's ``random``, numpy's global generator and the backend's
    (``keras.utils.set_random_seed``). Initializers get explicit seeds from :func:`layer_seed`."""
    import keras

    keras.utils.set_random_seed(seed)


def layer_seed(seed: int, index: int) -> int:
    """The explicit seed of the ``index``-th initializer (layer ``index``'s kernel, in the
    paper's nets) of a run seeded ``seed``: ``seed * 100 + index``. Within a run every
    initializer has its own seed; a run with more than 100 initializers shares its later ones'
    seeds with the first ones of the run seeded ``seed + 1``."""
    return seed * 100 + index
