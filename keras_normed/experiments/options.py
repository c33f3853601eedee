"""Option parsing shared by the experiment commands: argparse types and the data options.

Every value is checked where argparse reads it (``type=``), so a bad value ends as argparse's
own errors do: one line naming the option (``argument --repeats: must be an integer >= 1, got
'0'``) and exit status 2, before any data is loaded or any model is built. Checks that need
two options at once raise :class:`OptionError`, which ``keras-normed`` reports the same way.

Standard library only: the command's ``--help`` imports this module and nothing heavy.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Callable, List, Optional, Sequence

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


class OptionError(ValueError):
    """A bad combination of options; ``keras-normed`` prints it as a usage error (exit 2)."""


def _fail(what: str, text) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {what}, got {str(text)!r}")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise _fail(f"an integer >= {minimum}", text) from None
        if value < minimum:
            raise _fail(f"an integer >= {minimum}", text)
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1)
positive_int.__name__ = "positive_int"
nonneg_int = int_at_least(0)
nonneg_int.__name__ = "nonneg_int"


def _float(text: str, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise _fail(what, text) from None
    if not math.isfinite(value):
        raise _fail(what, text)
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number ``> 0``."""
    value = _float(text, "a number > 0")
    if value <= 0:
        raise _fail("a number > 0", text)
    return value


def nonneg_float(text: str) -> float:
    """An argparse type: a finite number ``>= 0``."""
    value = _float(text, "a number >= 0")
    if value < 0:
        raise _fail("a number >= 0", text)
    return value


def unit_interval(text: str) -> float:
    """An argparse type: a number in ``[0, 1)`` (a momentum, a smoothing factor)."""
    value = _float(text, "a number in [0, 1)")
    if not 0.0 <= value < 1.0:
        raise _fail("a number in [0, 1)", text)
    return value


def positive_int_list(text: str) -> List[int]:
    """An argparse type: comma-separated integers, each ``>= 1`` (``"10,50,100"``)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise _fail("comma-separated integers >= 1", text) from None
    if not values or min(values) < 1:
        raise _fail("comma-separated integers >= 1", text)
    return values


def choice_list(text: str, allowed: Sequence[str], option: str = "--inits") -> List[str]:
    """Split a comma-separated option value and check every item is one of ``allowed``.

    Raises:
        OptionError (a ValueError): naming ``option``, the unknown items and the allowed ones.
    """
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    unknown = [s for s in items if s not in allowed]
    if unknown or not items:
        raise OptionError(f"Unknown value(s) {unknown} in {option} {text!r}; expected a "
                          f"comma-separated subset of {list(allowed)}.")
    return items


def choices(allowed: Sequence[str]) -> Callable[[str], List[str]]:
    """An argparse type: a comma-separated, non-empty subset of ``allowed``."""

    def parse(text: str) -> List[str]:
        items = [s.strip() for s in str(text).split(",") if s.strip()]
        unknown = [s for s in items if s not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown value(s) {', '.join(unknown) or '(none given)'} in {str(text)!r}; "
                f"expected a comma-separated subset of {','.join(allowed)}")
        return items

    parse.__name__ = "choices"
    return parse


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


def has_mnist(folder: Optional[str]) -> bool:
    """Whether ``folder`` holds MNIST image IDX files (gzip-compressed or not)."""
    return bool(folder) and any(os.path.exists(os.path.join(folder, stem + ext))
                                for stem in _MNIST_STEMS for ext in (".gz", ""))


def add_data_arguments(parser: argparse.ArgumentParser, n_train: int = 8000,
                       n_test: int = 2000) -> None:
    """``--source``, ``--data-dir``, ``--n-train``, ``--n-test``, as every training command has
    them (see :func:`keras_normed.experiments.data.load_digits`)."""
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


def add_output_argument(parser: argparse.ArgumentParser, default: Optional[str],
                        help: str, metavar: str = "DIR") -> None:
    """``--output`` (with ``--out`` as a hidden alias, the old spelling of some commands)."""
    parser.add_argument("--output", default=default, metavar=metavar, help=help)
    parser.add_argument("--out", dest="output", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


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
