"""A quiet start for the command-line tools only (:func:`is_cli`); why and how: docs/cli.md.

An unset ``TF_CPP_MIN_LOG_LEVEL`` becomes ``"2"``; fd 2 is caught until :func:`end`, then written
back less what :func:`keep_line` drops.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import tempfile
from typing import Optional, Sequence

ENV = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "2"
CLI_MODULES = ("keras_normed", "keras_normed.cli", "examples.paper", "examples.paper.rule_study")
SCRIPT = "keras-normed"

# An absl C++ log line: severity, MMDD, time (or "00:00:<epoch seconds>"), thread, file:line].
_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
# INFO lines of another form: absl's pre-initialization notice, the CPU feature guard's second.
_INFO_LINES = ("WARNING: All log messages before absl::InitializeLog() is called",
               "To enable the following instructions:")

_state: dict = {}


def is_cli(argv: Optional[Sequence[str]] = None, orig_argv: Optional[Sequence[str]] = None) -> bool:
    """Whether this process is the ``keras-normed`` script, or ``python -m`` of a module of
    :data:`CLI_MODULES` (read from ``sys.orig_argv``, 3.10+)."""
    argv = sys.argv if argv is None else argv
    orig = list(getattr(sys, "orig_argv", ()) if orig_argv is None else orig_argv)
    script = os.path.basename(argv[0]) if argv and argv[0] else ""
    if os.path.splitext(script)[0] in (SCRIPT, SCRIPT + "-script"):
        return True
    args = iter(orig[1:])
    for arg in args:  # the interpreter's options, up to the script, -c or -m
        if arg == "-m":
            return next(args, None) in CLI_MODULES
        if arg.startswith("-m"):
            return arg[2:] in CLI_MODULES
        if arg in ("-X", "-W"):
            next(args, None)  # the option's value
        elif not arg.startswith("-") or arg.startswith("-c"):
            return False
    return False


def keep_line(line: str, level: int) -> bool:
    """Whether a line TensorFlow wrote while loading stays at ``TF_CPP_MIN_LOG_LEVEL=level``."""
    text = line.rstrip("\r\n")
    match = _LOG_LINE.match(text)
    if match:
        return "IWEF".index(match.group(1)) >= level  # INFO, WARNING, ERROR, FATAL: 0 to 3
    if text.startswith(_INFO_LINES):
        return level < 1
    return True


def _level() -> int:
    try:
        return int(os.environ.get(ENV, "0"))
    except ValueError:
        return 0


def begin() -> None:
    """For a command: default ``TF_CPP_MIN_LOG_LEVEL``, then catch fd 2 until :func:`end`."""
    if _state or not is_cli() or "tensorflow" in sys.modules:
        return
    _state["user_level"] = os.environ.get(ENV)
    os.environ.setdefault(ENV, DEFAULT_LEVEL)
    if _level() < 1:
        return  # the user asked for every line
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        capture = tempfile.TemporaryFile()
        os.dup2(capture.fileno(), 2)
    except (OSError, AttributeError, ValueError):
        return
    _state.update(saved=saved, capture=capture)
    atexit.register(end)  # also hands back what was caught when the import fails


def end() -> None:
    """Restore fd 2 and write back the caught lines that :func:`keep_line` keeps (idempotent)."""
    saved, capture = _state.pop("saved", None), _state.pop("capture", None)
    if saved is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    capture.seek(0)
    text = capture.read().decode("utf-8", "replace")
    capture.close()
    level = _level()
    kept = "".join(line for line in text.splitlines(keepends=True) if keep_line(line, level))
    data = kept.encode("utf-8")
    while data:
        data = data[os.write(2, data):]


begin()
