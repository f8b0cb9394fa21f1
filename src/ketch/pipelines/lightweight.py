"""Recognising KFP's lightweight Python components and running them fast.

The command the ``kfp`` compiler writes for ``@dsl.component`` is: install
packages with pip, write the function's source to a file, then run
``python3 -m kfp.dsl.executor_main``. Ketch recognises that shape and, when
every package it would install is already importable, skips pip and runs the
executor module directly (in a pre-warmed interpreter when the backend has
one). Otherwise the requirements get a cached virtual environment of their own.

What the interpreter has installed is read once per :class:`Packages` (a run, or
the server's run service, holds one).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

EXECUTOR_MODULE = "kfp.dsl.executor_main"
_PIP_SEGMENT = re.compile(r"python3 -m pip install (?P<args>.*?)(?=&&|$)", re.S)
_PIP_OPTS_WITH_VALUE = {
    "--index-url",
    "-i",
    "--extra-index-url",
    "--trusted-host",
    "--find-links",
    "-f",
}


@dataclass
class LightweightComponent:
    """A ``@dsl.component`` (or ``target_image``) executor, taken apart."""

    function: str
    source: str | None  # inline source; None for target_image components
    requirements: list[str] = field(default_factory=list)
    pip_options: list[str] = field(default_factory=list)
    executor_args: list[str] = field(default_factory=list)  # args after the module, unresolved


def parse(container: dict, packages: Packages) -> LightweightComponent | None:
    """Return the component's parts if ``container`` has the lightweight shape
    (``packages``: what is installed, for the kfp its command installs)."""
    command: list[str] = list(container.get("command", []))
    args: list[str] = list(container.get("args", []))
    if "--function_to_execute" not in args:
        return None
    at = args.index("--function_to_execute") + 1
    if at >= len(args):
        return None
    function = args[at]
    # target_image: python3 -m kfp.dsl.executor_main, source in the image
    if command[:3] == ["python3", "-m", EXECUTOR_MODULE] or command[:3] == [
        "python",
        "-m",
        EXECUTOR_MODULE,
    ]:
        return LightweightComponent(
            function=function, source=None, executor_args=command[3:] + args
        )
    if (
        len(command) >= 7
        and command[0] == "sh"
        and command[1] == "-c"
        and command[3:5] == ["sh", "-ec"]
    ):
        if EXECUTOR_MODULE not in command[5]:
            return None
        requirements, options = _pip_requirements(command[2], packages)
        return LightweightComponent(
            function=function,
            source=command[6],
            requirements=requirements,
            pip_options=options,
            executor_args=command[7:] + args,
        )
    return None


def _pip_requirements(script: str, packages: Packages) -> tuple[list[str], list[str]]:
    """The packages the command installs, and its pip options.

    KFP's command installs the user's packages and, in a pip call of its own
    with ``--no-deps``, the ``kfp`` the component was compiled with: kfp's own
    dependencies never take part in resolving the user's pins. Ketch's
    environments see the packages of the interpreter running Ketch, whose kfp
    runs any 2.x component, so what a ``--no-deps`` call installs is left out
    when it is already there: a pin such as ``google-cloud-storage==1.31.2``
    resolves as it does on KFP.
    """
    requirements: list[str] = []
    options: list[str] = []
    seen: set[tuple[str, str]] = set()
    for m in _PIP_SEGMENT.finditer(script):
        try:
            tokens = shlex.split(m.group("args"))
        except ValueError:
            continue
        no_deps = "--no-deps" in tokens
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok in _PIP_OPTS_WITH_VALUE and i + 1 < len(tokens):
                pair = (tok, tokens[i + 1])
                if pair not in seen:
                    seen.add(pair)
                    options.extend(pair)
                i += 2
                continue
            if tok.startswith("-"):
                i += 1
                continue
            if no_deps and packages.satisfied(tok):
                i += 1
                continue
            if tok not in requirements:
                requirements.append(tok)
            i += 1
    return requirements, options


_NOT_PRELOADED = {"kfp", "kfp-pipeline-spec", "kfp-server-api", "typing-extensions"}


class Packages:
    """The packages of the interpreter running Ketch, read once and kept: whether a
    requirement is satisfied, and the modules a distribution provides."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._satisfied: dict[str, bool] = {}
        self._modules: dict[str, list[str]] | None = None

    def satisfied(self, requirement: str) -> bool:
        with self._lock:
            known = self._satisfied.get(requirement)
        if known is None:
            known = _satisfied(requirement)
            with self._lock:
                self._satisfied[requirement] = known
        return known

    def missing_requirements(self, component: LightweightComponent) -> list[str]:
        """Requirements not already satisfied by the interpreter running Ketch."""
        return [r for r in component.requirements if not self.satisfied(r)]

    def modules_by_distribution(self) -> dict[str, list[str]]:
        with self._lock:
            if self._modules is None:
                self._modules = _modules_by_distribution()
            return self._modules

    def preload_modules(self, component: LightweightComponent) -> tuple[str, ...]:
        """The modules a warm interpreter imports once for this component.

        The executor module, plus the top-level modules of the packages the
        component asks to install (``scikit-learn`` gives ``sklearn``), when they
        are already installed: every task of the component imports them anyway.
        """
        modules: list[str] = [EXECUTOR_MODULE]
        by_dist = self.modules_by_distribution()
        for requirement in component.requirements:
            try:
                name = Requirement(requirement).name.lower().replace("_", "-")
            except InvalidRequirement:
                continue
            if name in _NOT_PRELOADED or not self.satisfied(requirement):
                continue
            for module in sorted(by_dist.get(name, [])):
                if module not in modules:
                    modules.append(module)
        return tuple(modules)


def _satisfied(requirement: str) -> bool:
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return False
    if req.marker is not None and not req.marker.evaluate():
        return True  # not needed on this Python
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return False
    if req.name.lower() == "kfp":
        # The executor protocol is stable across kfp 2.x: the installed kfp runs
        # components compiled by any 2.x compiler.
        return installed.split(".")[0] == "2"
    return not req.specifier or req.specifier.contains(installed, prereleases=True)


def _modules_by_distribution() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        if module.startswith("_") or not module.isidentifier():
            continue
        for dist in dists:
            out.setdefault(dist.lower().replace("_", "-"), []).append(module)
    return out


_WARMUP_SOURCE = """
import kfp
from kfp import dsl
from kfp.dsl import *
from typing import *

def ketch_warmup(x: int) -> int:
    return x + 1
"""
_WARMUP_MODULE = "ketch_warmup_component.py"


def warmup_argv(folder: Path) -> tuple[str, ...]:
    """Executor arguments for one throwaway task that warms an interpreter up; its
    component file is written into ``folder`` (once: later calls find it there)."""
    module = folder / _WARMUP_MODULE
    if not module.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=folder, prefix=".warmup-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(_WARMUP_SOURCE)
        os.replace(scratch, module)  # whole, even when two runs write it at once
    executor_input = {
        "inputs": {"parameterValues": {"x": 1}},
        "outputs": {
            "parameters": {"Output": {"outputFile": f"{folder}/out/Output"}},
            "outputFile": f"{folder}/out/executor_output.json",
        },
    }
    return (
        "--component_module_path",
        str(module),
        "--executor_input",
        json.dumps(executor_input),
        "--function_to_execute",
        "ketch_warmup",
    )
