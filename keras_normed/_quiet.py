"""A quiet start for the ``keras-normed`` command: TensorFlow's C++ log lines stay hidden.

``keras_normed/__init__.py`` imports this module first, before Keras loads TensorFlow, and calls
:func:`end` once the package is imported. Nothing happens unless this process is the command-line
tool (the ``keras-normed`` script, ``python -m keras_normed`` or ``python -m keras_normed.cli``):
importing the package as a library changes no environment variable and no file descriptor.

For the command:

- ``TF_CPP_MIN_LOG_LEVEL`` is set to ``"2"`` (INFO and WARNING lines of TensorFlow's C++ code
  hidden, errors shown) when the user has not set it; a value the user set is kept as is;
- TensorFlow 2.16+ writes a few lines while it loads, before it applies that level: absl's
  ``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``,
  the oneDNN notice (``I... port.cc:...] oneDNN custom operations are on ...``) and the CPU
  feature guard. So while the package is imported, file descriptor 2 goes to a temporary file;
  :func:`end` then writes what it holds back to stderr, less the C++ log lines below the level
  (:func:`keep_line`). Python's own output (warnings, a traceback) passes unchanged.

``TF_CPP_MIN_LOG_LEVEL=0 keras-normed ...`` shows every line. ``TF_ENABLE_ONEDNN_OPTS`` is left
alone: turning oneDNN off would hide its notice but change speed and round-off.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import tempfile
from typing import Optional, Sequence

ENV = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "2"
CLI_MODULES = ("keras_normed", "keras_normed.cli", "examples.paper")
SCRIPT = "keras-normed"

# An absl / TensorFlow C++ log line: severity letter, MMDD, time (before absl is initialized it
# reads "00:00:<epoch seconds>"), thread id, file:line] message.
_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
# The second line of the CPU feature guard's INFO message.
_CONTINUATION = "To enable the following instructions:"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}

_state: dict = {}


def is_cli(argv: Optional[Sequence[str]] = None,
           orig_argv: Optional[Sequence[str]] = None) -> bool:
    """Whether this process is ``keras-normed``: the console script, or ``python -m`` of
    ``keras_normed`` / ``keras_normed.cli`` (the latter needs ``sys.orig_argv``, Python 3.10+)."""
    argv = sys.argv if argv is None else argv
    orig = list(getattr(sys, "orig_argv", ()) if orig_argv is None else orig_argv)
    script = os.path.basename(argv[0]) if argv and argv[0] else ""
    if os.path.splitext(script)[0] in (SCRIPT, SCRIPT + "-script"):
        return True
    i = 1
    while i < len(orig):  # the interpreter's options, up to the script, -c or -m
        arg = orig[i]
        if arg == "-m":
            return i + 1 < len(orig) and orig[i + 1] in CLI_MODULES
        if arg.startswith("-m"):
            return arg[2:] in CLI_MODULES
        if arg in ("-X", "-W"):
            i += 2
            continue
        if not arg.startswith("-") or arg.startswith("-c"):
            return False
        i += 1
    return False


def keep_line(line: str, level: int) -> bool:
    """Whether a line TensorFlow wrote while loading stays visible at ``TF_CPP_MIN_LOG_LEVEL``
    ``level``: C++ log lines below the level, and absl's pre-initialization notice and the CPU
    feature guard's second line when INFO is hidden, are dropped; any other line is kept."""
    text = line.rstrip("\r\n")
    match = _LOG_LINE.match(text)
    if match:
        return _SEVERITY[match.group(1)] >= level
    if text.startswith(_ABSL_PREAMBLE) or text.startswith(_CONTINUATION):
        return level < 1
    return True


def _level() -> int:
    try:
        return int(os.environ.get(ENV, "0"))
    except ValueError:
        return 0


def begin() -> None:
    """For the command: default ``TF_CPP_MIN_LOG_LEVEL``, then catch fd 2 until :func:`end`."""
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
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
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
