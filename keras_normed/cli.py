"""Command-line entry point: ``keras-normed <command> [options]``.

A thin dispatcher. Each command is a module exposing

- ``add_arguments(parser: argparse.ArgumentParser) -> None``
- ``run(args: argparse.Namespace) -> int`` (the exit code)

and an optional module docstring whose first line becomes the command's help. Modules are imported
only when their command runs (or when ``<command> --help`` is asked for), so ``keras-normed --help``
stays fast and never imports TensorFlow.

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


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<10} {_summary(module)}" for name, module in sorted(COMMANDS.items())]
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Structure-aware initialization and block-circulant FFT layers for Keras 3.",
        epilog="commands:\n" + "\n".join(lines)
        + f"\n\nRun '{PROG} <command> --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command",
                        help="one of: " + ", ".join(sorted(COMMANDS)))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _command_parser(command: str, module) -> argparse.ArgumentParser:
    doc = (module.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else None
    parser = argparse.ArgumentParser(
        prog=f"{PROG} {command}", description=summary,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code.

    Unknown commands and bad options end in an argparse error (``SystemExit(2)``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    ns = top.parse_args(argv)
    module = importlib.import_module(COMMANDS[ns.command])
    args = _command_parser(ns.command, module).parse_args(ns.args)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
