"""Run a ``python`` command line inside an already started interpreter.

``python -m ketch.core.backend.pyrun [options] (-c CODE | -m MODULE | SCRIPT) [args]``
does what ``python [options] (-c CODE | -m MODULE | SCRIPT) [args]`` does:
``sys.argv`` and ``sys.path[0]`` are set the way the interpreter sets them, and
``-u`` (or ``PYTHONUNBUFFERED``) makes stdout and stderr unbuffered. The local
backend runs it in a pre-warmed fork server (see :func:`command_entry`), which
starts a Python process in a few milliseconds instead of forking the caller.

Only the standard library is imported here: the fork server has nothing else.
"""

from __future__ import annotations

import os
import runpy
import sys

#: interpreter options that take no value and change nothing a forked child
#: could not honor (``-u`` is handled; the others are accepted and ignored)
FLAGS = {"-u", "-B", "-s", "-E", "-q"}


def split(argv: list[str]) -> tuple[set[str], str, str, list[str]] | None:
    """``(flags, mode, target, args)`` of a python command line after the
    interpreter; mode is ``-c``, ``-m`` or ``script``; ``None`` if unsupported."""
    flags: set[str] = set()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in FLAGS:
            flags.add(arg)
            index += 1
            continue
        if arg in ("-c", "-m"):
            if index + 1 >= len(argv):
                return None
            return flags, arg, argv[index + 1], argv[index + 2 :]
        if arg.startswith("-"):
            return None  # -W, -X, -O, -I …: leave them to a real interpreter
        return flags, "script", arg, argv[index + 1 :]
    return None


def main(argv: list[str]) -> None:
    parsed = split(argv)
    if parsed is None:
        raise SystemExit(f"pyrun: unsupported command line: {argv!r}")
    flags, mode, target, args = parsed
    if "-u" in flags or os.environ.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(write_through=True)
    if mode == "-c":
        sys.argv = ["-c", *args]
        sys.path[0] = ""
        code = compile(target, "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 - python -c
    elif mode == "-m":
        sys.argv = [target, *args]
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
