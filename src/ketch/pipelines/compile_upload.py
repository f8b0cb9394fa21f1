"""Compile an uploaded ``.py`` pipeline: ``python -m ketch.pipelines.compile_upload
SOURCE OUT [NAME]``.

Runs in a process of its own, started through the compute backend (never in the
server: loading the file runs the user's code). It loads SOURCE as a module, finds
the KFP pipelines it defines (``@dsl.pipeline`` functions, kfp's ``GraphComponent``):
exactly one, or the one named NAME, and compiles it with kfp's compiler to OUT. On
any error it writes one line to stderr and exits 1; the caller shows that line.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

MODULE = "ketch.pipelines.compile_upload"
#: the name the uploaded file is loaded under
UPLOADED = "uploaded_pipeline"


class Refused(Exception):
    """What the caller is told, as it is."""


def _where(exc: BaseException, source: Path) -> str:
    """`` (line N)`` of the deepest frame in the uploaded file, if any."""
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(exc.__traceback__)
        if Path(frame.filename) == source
    ]
    return f" (line {lines[-1]})" if lines else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load(source: Path) -> dict[str, Any]:
    """The names the module in ``source`` defines once it ran."""
    spec = importlib.util.spec_from_file_location(UPLOADED, source)
    if spec is None or spec.loader is None:
        raise Refused(f"cannot load {source.name} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[UPLOADED] = module  # kfp reads components' source through it
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise Refused(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    except BaseException as exc:  # noqa: BLE001 - whatever the user's code raises is its message
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            raise Refused("the file exits while it is loaded (sys.exit)") from None
        message = _one_line(str(exc)) or type(exc).__name__
        raise Refused(
            f"running the file failed{_where(exc, source)}: {type(exc).__name__}: {message}"
        ) from None
    return vars(module)


def pipelines_in(names: dict[str, Any]) -> dict[str, Any]:
    """The KFP pipelines among ``names`` (each object once, by its first name)."""
    from kfp.dsl.graph_component import GraphComponent

    found: dict[str, Any] = {}
    seen: set[int] = set()
    for name, value in names.items():
        if isinstance(value, GraphComponent) and id(value) not in seen:
            seen.add(id(value))
            found[name] = value
    return found


def choose(found: dict[str, Any], wanted: str | None) -> Any:
    if wanted:
        if wanted not in found:
            listed = ", ".join(sorted(found)) or "none"
            raise Refused(f"the file defines no pipeline named {wanted!r} (pipelines: {listed})")
        return found[wanted]
    if not found:
        raise Refused("the file defines no KFP pipeline (a function decorated with @dsl.pipeline)")
    if len(found) > 1:
        raise Refused(
            f"the file defines {len(found)} pipelines ({', '.join(sorted(found))}); "
            "name the one to compile"
        )
    return next(iter(found.values()))


def compile_file(source: Path, out: Path, wanted: str | None = None) -> None:
    pipeline = choose(pipelines_in(load(source)), wanted)
    from kfp import compiler

    try:
        compiler.Compiler().compile(pipeline, str(out))
    except Exception as exc:  # noqa: BLE001 - the compiler's message is the answer
        message = _one_line(str(exc)) or type(exc).__name__
        raise Refused(f"compiling failed: {type(exc).__name__}: {message}") from None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(f"usage: python -m {MODULE} SOURCE OUT [PIPELINE]", file=sys.stderr)
        return 2
    try:
        compile_file(Path(args[0]).resolve(), Path(args[1]), args[2] if len(args) == 3 else None)
    except Refused as exc:
        print(_one_line(str(exc)), file=sys.stderr)
        return 1
    except BaseException as exc:  # noqa: BLE001 - one line, never a traceback
        print(_one_line(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
