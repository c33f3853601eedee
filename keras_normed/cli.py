"""``keras-normed <command> [options]`` (docs/cli.md), and the argparse types its commands share.

A command is a module with ``add_arguments(parser)`` and ``run(args) -> int``, imported only when
it runs or shows its help; bad values and combinations end in one error line, exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
import tempfile
from typing import Callable, Dict, List, Optional

COMMANDS = {  # command -> module with add_arguments(parser) and run(args) -> int
    "bench": "keras_normed.bench",
}
PROG = "keras-normed"


class OptionError(ValueError):
    """A bad combination of options; ``keras-normed`` prints it as a usage error (exit 2)."""


def _fail(what: str, text) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {what}, got {str(text)!r}")


def int_at_least(minimum: int, name: Optional[str] = None) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``, named ``name`` or ``int_at_least_<minimum>``."""

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise _fail(f"an integer >= {minimum}", text)
        return value

    parse.__name__ = name or f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1, "positive_int")
nonneg_int = int_at_least(0, "nonneg_int")


def output_file(text: str) -> str:
    """An argparse type: a file to write (its folder created if missing), not a folder; checked
    before a run, so that a long run does not fail at its end."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"a folder, not a file: {text!r}")
    return writable_under(os.path.dirname(os.path.abspath(text)), text)


def png_file(text: str) -> str:
    """An argparse type: :func:`output_file` ending in ``.png`` (matplotlib would add the
    suffix to another name, and write elsewhere than said)."""
    if not str(text).lower().endswith(".png"):
        raise _fail("a file name ending in .png", text)
    return output_file(text)


def writable_under(parent: str, text: str) -> str:
    """``text`` if the nearest existing folder of ``parent`` is a folder this process can
    write in (the missing ones below it are created at the end of a run), else an argparse
    error naming ``text``."""
    while not os.path.exists(parent):  # the nearest folder that exists will hold the new ones
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{parent!r} is a file, not a folder: cannot write "
                                         f"{text!r}")
    try:  # a real try (os.access says yes to root, also where nothing can be created)
        tempfile.TemporaryDirectory(dir=parent).cleanup()
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot write in {parent!r} ({err.strerror}): pass a "
                                         f"path in a writable folder (got {text!r})") from None
    return text


def positive_int_list(text: str) -> List[int]:
    """An argparse type: comma-separated integers, each ``>= 1`` (``"10,50,100"``), repeats
    dropped (a size given twice is measured once)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise _fail("comma-separated integers >= 1", text)
    return list(dict.fromkeys(values))


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
    """``command`` and its own arguments; the epilog (command summaries) is built for --help."""

    def __init__(self, commands: Dict[str, str], prog: str, description: str):
        super().__init__(prog=prog, description=description,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self.commands = commands
        self.add_argument("command", choices=sorted(commands), metavar="command",
                          help="one of: " + ", ".join(sorted(commands)))
        self.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

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


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless it states one, or the default is ``None``
    or a flag's ``False``. Lists are shown as typed."""

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
    parser = Parser(prog=prog, description=_summary(module.__name__) or None,
                    formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None, commands: Optional[Dict[str, str]] = None,
         prog: str = PROG, description: Optional[str] = None) -> int:
    """Run the command of ``argv`` (default ``sys.argv[1:]``) from ``commands`` (default
    :data:`COMMANDS`); return its exit code. Bad input ends in ``SystemExit(2)``."""
    commands = COMMANDS if commands is None else commands
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _TopParser(commands, prog, description or
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
