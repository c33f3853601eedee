"""Command-line entry point: ``keras-normed <command> [options]``.

A thin dispatcher. Each command is a module exposing

- ``add_arguments(parser: argparse.ArgumentParser) -> None``
- ``run(args: argparse.Namespace) -> int`` (the exit code)

and an optional module docstring whose first line becomes the command's help. A command's module
is imported only when that command runs (or when ``<command> --help`` is asked for), and keeps its
heavy imports (data loading, plotting, model building) inside functions, so any ``--help`` costs
what ``import keras_normed`` costs (the package imports Keras, hence TensorFlow), no more.

Errors: a bad value is refused where argparse reads it (the types in
:mod:`keras_normed.experiments.options`) or, for checks across options, by an
:class:`~keras_normed.experiments.options.OptionError` from the command; either way the tool
prints one line, ``keras-normed <command>: error: argument --repeats: must be an integer >= 1,
got '0'``, and exits with status 2, as argparse does, with no traceback.

TensorFlow's start-up log lines are hidden unless ``TF_CPP_MIN_LOG_LEVEL`` is set
(:mod:`keras_normed._quiet`).

Example::

    keras-normed demo --epochs 2
    python -m keras_normed bench --quick --markdown
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from typing import List, Optional

# command -> module with add_arguments(parser) and run(args) -> int. One line per command.
COMMANDS = {
    "demo": "keras_normed.experiments.demo",
    "bench": "keras_normed.bench",
    "depth": "keras_normed.experiments.depth",
    "resnet": "keras_normed.experiments.resnet",
    "datainit": "keras_normed.experiments.datainit",
    "compare": "keras_normed.experiments.compare",
}

PROG = "keras-normed"


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

    def format_help(self) -> str:
        if self.epilog is None:
            lines = [f"  {name:<10} {_summary(module)}"
                     for name, module in sorted(COMMANDS.items())]
            self.epilog = ("commands:\n" + "\n".join(lines)
                           + f"\n\nRun '{PROG} <command> --help' for a command's options.")
        return super().format_help()

    def error(self, message: str):
        # `args` (the command's own options, argparse.REMAINDER) is never what is missing.
        super().error(message.replace("command, args", "command"))


def _top_parser() -> argparse.ArgumentParser:
    parser = _TopParser(
        prog=PROG,
        description="Structure-aware initialization and block-circulant FFT layers for Keras 3.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command",
                        help="one of: " + ", ".join(sorted(COMMANDS)))
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


def _command_parser(command: str, module) -> argparse.ArgumentParser:
    doc = (module.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else None
    parser = Parser(prog=f"{PROG} {command}", description=summary,
                    formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code.

    Unknown commands, bad option values and bad combinations of options (an
    :class:`~keras_normed.experiments.options.OptionError` from the command) end in a one-line
    argparse error (``SystemExit(2)``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv:
        top.error("a command is required: one of " + ", ".join(sorted(COMMANDS)))
    ns = top.parse_args(argv)
    module = importlib.import_module(COMMANDS[ns.command])
    parser = _command_parser(ns.command, module)
    args = parser.parse_args(ns.args)
    from keras_normed.experiments.options import OptionError

    try:
        return int(module.run(args) or 0)
    except OptionError as err:
        parser.error(str(err))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
