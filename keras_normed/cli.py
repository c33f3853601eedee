"""Command-line entry point: ``keras-normed <command> [options]``, and the argparse types the
commands share.

A thin dispatcher (also the one behind ``python -m examples.paper``, with its own table). Each
command is a module exposing

- ``add_arguments(parser: argparse.ArgumentParser) -> None``
- ``run(args: argparse.Namespace) -> int`` (the exit code)

and an optional module docstring whose first line becomes the command's help. A command's module
is imported only when that command runs (or when ``<command> --help`` is asked for), and keeps its
heavy imports (data loading, plotting, model building) inside functions, so any ``--help`` costs
what ``import keras_normed`` costs (the package imports Keras, hence TensorFlow), no more.

Errors: a bad value is refused where argparse reads it (the types in
this module: :func:`positive_int`, ...) or, for checks across options, by an
:class:`OptionError` from the command; either way the tool
prints one line, ``keras-normed <command>: error: argument --repeats: must be an integer >= 1,
got '0'``, and exits with status 2, as argparse does, with no traceback.

TensorFlow's start-up log lines are hidden unless ``TF_CPP_MIN_LOG_LEVEL`` is set
(:mod:`keras_normed._quiet`).

Example::

    keras-normed bench --quick --markdown
    python -m keras_normed bench --sizes 512
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import math
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

# command -> module with add_arguments(parser) and run(args) -> int. One line per command.
# The paper's experiments are commands of `python -m examples.paper` (a clone's examples/).
COMMANDS = {
    "bench": "keras_normed.bench",
}

PROG = "keras-normed"


# --------------------------------------------------------------------------- argparse types

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


def add_output_argument(parser: argparse.ArgumentParser, default: Optional[str],
                        help: str, metavar: str = "DIR") -> None:
    """``--output`` (with ``--out`` as a hidden alias, the old spelling of some commands)."""
    parser.add_argument("--output", default=default, metavar=metavar, help=help)
    parser.add_argument("--out", dest="output", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)



# --------------------------------------------------------------------------- the dispatcher


def _summary(module_name: str) -> str:
    """First line of a command module's docstring, read from its source without importing it."""
    try:
        spec = importlib.util.find_spec(module_name)
        with open(spec.origin, encoding="utf-8") as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
    except (ImportError, AttributeError, OSError, SyntaxError, TypeError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (then exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _TopParser(Parser):
    """The dispatcher's parser: its epilog, the commands' summaries read from their sources, is
    only built when the help is shown."""

    commands: Dict[str, str] = COMMANDS

    def format_help(self) -> str:
        if self.epilog is None:
            lines = [f"  {name:<10} {_summary(module)}"
                     for name, module in sorted(self.commands.items())]
            self.epilog = ("commands:\n" + "\n".join(lines)
                           + f"\n\nRun '{self.prog} <command> --help' for a command's options.")
        return super().format_help()

    def error(self, message: str):
        # `args` (the command's own options, argparse.REMAINDER) is never what is missing.
        super().error(message.replace("command, args", "command"))


def _top_parser(commands: Dict[str, str], prog: str, description: str) -> argparse.ArgumentParser:
    parser = _TopParser(prog=prog, description=description,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.commands = commands
    parser.add_argument("command", choices=sorted(commands), metavar="command",
                        help="one of: " + ", ".join(sorted(commands)))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help, once: not when the help already states its
    default, nor for a default of ``None`` or a flag's ``False``. Lists are shown as typed."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("(default" in text or not action.option_strings or default is None
                or default is False or default is argparse.SUPPRESS):
            return text
        if isinstance(default, (list, tuple)):
            sep = " " if action.nargs not in (None, "?") else ","
            default = sep.join(map(str, default))
        shown = str(default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def _command_parser(prog: str, module) -> argparse.ArgumentParser:
    doc = (module.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else None
    parser = Parser(prog=prog, description=summary,
                    formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None, commands: Optional[Dict[str, str]] = None,
         prog: str = PROG, description: Optional[str] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code.

    ``commands`` (default :data:`COMMANDS`) maps a command to its module; ``prog`` names the
    tool in usage and errors. Unknown commands, bad option values and bad combinations of
    options (an :class:`OptionError` from the command) end in a one-line argparse error
    (``SystemExit(2)``).
    """
    commands = COMMANDS if commands is None else commands
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser(commands, prog, description or
                      "Structure-aware initialization and block-circulant FFT layers for Keras 3.")
    if not argv:
        top.error("a command is required: one of " + ", ".join(sorted(commands)))
    ns = top.parse_args(argv)
    module = importlib.import_module(commands[ns.command])
    parser = _command_parser(f"{prog} {ns.command}", module)
    args = parser.parse_args(ns.args)
    try:
        return int(module.run(args) or 0)
    except OptionError as err:
        parser.error(str(err))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
